package httpapi

// Paths of the middleware registered by routes.
const (
	pathAPI     = "/api"
	pathAPIUser = "/api/:user_id"
)

// routes registers the middleware in order, then the routes.
func (s *Server) routes() {
	s.app.Use(s.closeUnreadBody, s.recoverPanics, s.requestID, s.accessLog, s.cors())
	s.app.Get("/healthz", s.healthz)
	s.app.Get("/readyz", s.readyz)
	if s.deps.Console != nil {
		s.consoleRoutes()
	}
	// Fiber's Use matches by prefix, so every path under /api (and any path
	// merely starting with "/api") is authenticated before routing, unknown
	// routes included.
	s.app.Use(pathAPI, s.authenticate)
	// Registered before the path user check, which would read "me" as a
	// user id; a user whose id is "me" still reaches /api/me/… below.
	s.app.Get(pathAPI+"/me", s.me)
	s.app.Use(pathAPIUser, s.checkPathUser)
	s.taskRoutes()
	s.chatRoutes()
	s.chatkitRoutes()
}
