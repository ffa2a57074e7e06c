package httpapi

// Paths of the middleware registered by routes: the access log does not
// report them as the matched route.
const (
	pathAPI     = "/api"
	pathAPIUser = "/api/:user_id"
)

var middlewarePaths = map[string]bool{"/": true, pathAPI: true, pathAPIUser: true}

// routes registers the middleware in order, then the routes.
func (s *Server) routes() {
	s.app.Use(s.closeUnreadBody, s.recoverPanics, s.requestID, s.accessLog, s.cors())
	s.app.Get("/healthz", s.healthz)
	s.app.Get("/readyz", s.readyz)
	// Fiber's Use matches by prefix, so every path under /api (and any path
	// merely starting with "/api") is authenticated before routing, unknown
	// routes included.
	s.app.Use(pathAPI, s.authenticate)
	s.app.Use(pathAPIUser, s.checkPathUser)
	s.taskRoutes()
	s.chatRoutes()
	s.chatkitRoutes()
}
