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
	// Images, networks and volumes (images*.go, networks*.go, volumes*.go).
	rs = append(rs, s.imageRoutes()...)
	rs = append(rs, s.networkRoutes()...)
	rs = append(rs, s.volumeRoutes()...)
	return rs
}
