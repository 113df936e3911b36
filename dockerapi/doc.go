// Package dockerapi serves the Docker Engine API on top of arrowd, so that
// the docker CLI, docker-py, docker-compose and Testcontainers drive Arrow
// unchanged: every container is an arrow, every request is translated into
// Arrow's one description of an arrow ([api.Config]) and the daemon's own
// operations (package daemon), never a second implementation of them.
// Podman won many of its users the same way.
//
// The wire types are the Docker API's published Go types
// (github.com/moby/moby/api); this package holds only the translation.
//
// # Versions
//
// Requests name an API version in their path (/v1.47/containers/json) or
// none (the newest). Versions from [MinVersion] to [MaxVersion] are served,
// as dockerd serves its range; the server reports MaxVersion in the
// Api-Version header of every answer, which is how clients negotiate.
//
// # What Arrow lacks
//
// An endpoint or option Arrow cannot honour answers in Docker's error shape
// ({"message": ...}) with a status that says so and a message naming what
// Arrow lacks: never a silent success. `docker build` is one: its error
// names the way in (build elsewhere, then docker load or a registry).
package dockerapi
