package dockerapi

// routes lists the endpoints, without their version prefix. Each group is
// in its own file: system.go, containers.go, exec.go, images.go,
// networks.go, volumes.go, events.go.
func (s *Server) routes() []route {
	rs := []route{
		{"GET /_ping", s.ping},
		{"HEAD /_ping", s.ping},
		{"GET /version", s.version},
		{"GET /info", s.info},
		{"POST /build", s.build},
	}
	// Containers, exec and events (containers*.go, exec.go, events.go).
	rs = append(rs, s.containerRoutes()...)
	rs = append(rs, s.execRoutes()...)
	rs = append(rs, s.eventsRoutes()...)
	// Images, networks and volumes (images*.go, networks*.go, volumes*.go).
	rs = append(rs, s.imageRoutes()...)
	rs = append(rs, s.networkRoutes()...)
	rs = append(rs, s.volumeRoutes()...)
	return rs
}
