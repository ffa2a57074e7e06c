package httpapi

import (
	"net/url"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/taskchat/taskchat/pkg/todo"
	"github.com/taskchat/taskchat/pkg/validate"
)

// taskRoutes registers the tasks routes of docs/api.md. Authentication and the path
// user check have run before any of them.
func (s *Server) taskRoutes() {
	const tasks, task = pathAPIUser + "/tasks", pathAPIUser + "/tasks/:id"
	s.app.Get(tasks, s.listTasks)
	s.app.Post(tasks, s.createTask)
	s.app.Get(task, s.getTask)
	s.app.Put(task, s.updateTask)
	s.app.Delete(task, s.deleteTask)
	s.app.Patch(task+"/complete", s.toggleTask)
}

// listResponse is the API's list shape; Data is never null.
type listResponse[T any] struct {
	Data       []T     `json:"data"`
	NextCursor *string `json:"next_cursor"`
}

func (s *Server) listTasks(c *fiber.Ctx) error {
	user, err := caller(c)
	if err != nil {
		return err
	}
	limit, err := todo.ParseLimit(query(c, "limit"))
	if err != nil {
		return err
	}
	page, err := s.deps.Tasks.List(c.UserContext(), user, todo.ListParams{
		Status: query(c, "status"),
		Sort:   query(c, "sort"),
		Order:  query(c, "order"),
		Query:  query(c, "q"),
		Limit:  limit,
		Cursor: query(c, "cursor"),
	})
	if err != nil {
		return err
	}
	return c.JSON(newList(page.Tasks, page.NextCursor))
}

// newTaskBody is the body of POST /tasks.
type newTaskBody struct {
	Title       optional[string] `json:"title"`
	Description optional[string] `json:"description"`
}

func (s *Server) createTask(c *fiber.Ctx) error {
	user, err := caller(c)
	if err != nil {
		return err
	}
	var in newTaskBody
	if err := s.decodeJSON(c, &in); err != nil {
		return err
	}
	if in.Title.Null {
		return validate.Field("title", "must be a string")
	}
	t, err := s.deps.Tasks.Create(c.UserContext(), user, todo.NewTask{
		Title:       in.Title.Value,
		Description: in.Description.ptr(),
	})
	if err != nil {
		return err
	}
	c.Location("/api/" + url.PathEscape(user) + "/tasks/" + strconv.FormatInt(t.ID, 10))
	return c.Status(fiber.StatusCreated).JSON(t)
}

func (s *Server) getTask(c *fiber.Ctx) error {
	user, id, err := callerAndTask(c)
	if err != nil {
		return err
	}
	t, err := s.deps.Tasks.Get(c.UserContext(), user, id)
	if err != nil {
		return err
	}
	return c.JSON(t)
}

// patchBody is the body of PUT /tasks/:id; description null clears it.
type patchBody struct {
	Title       optional[string] `json:"title"`
	Description optional[string] `json:"description"`
	Completed   optional[bool]   `json:"completed"`
}

func (s *Server) updateTask(c *fiber.Ctx) error {
	user, err := caller(c)
	if err != nil {
		return err
	}
	var in patchBody
	if err := s.decodeJSON(c, &in); err != nil {
		return err
	}
	var nulls validate.Errors
	if in.Title.Null {
		nulls.Add("title", "must be a string")
	}
	if in.Completed.Null {
		nulls.Add("completed", "must be true or false")
	}
	if err := nulls.Err(); err != nil {
		return err
	}
	// The whole body, rules included, is checked before the id: body errors
	// (400) come before 404 in the order of checks.
	patch, err := todo.Patch{
		Title:            in.Title.ptr(),
		Description:      in.Description.ptr(),
		ClearDescription: in.Description.Null,
		Completed:        in.Completed.ptr(),
	}.Normalize()
	if err != nil {
		return err
	}
	id, err := taskID(c)
	if err != nil {
		return err
	}
	t, err := s.deps.Tasks.Update(c.UserContext(), user, id, patch)
	if err != nil {
		return err
	}
	return c.JSON(t)
}

func (s *Server) deleteTask(c *fiber.Ctx) error {
	user, id, err := callerAndTask(c)
	if err != nil {
		return err
	}
	if err := s.deps.Tasks.Delete(c.UserContext(), user, id); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

func (s *Server) toggleTask(c *fiber.Ctx) error {
	user, id, err := callerAndTask(c)
	if err != nil {
		return err
	}
	t, err := s.deps.Tasks.ToggleComplete(c.UserContext(), user, id)
	if err != nil {
		return err
	}
	return c.JSON(t)
}

// caller is UserID for handlers: no user is a 401.
func caller(c *fiber.Ctx) (string, error) {
	if u := UserID(c); u != "" {
		return u, nil
	}
	return "", errUnauthorized("a credential is required")
}

// callerAndTask is caller and taskID for the bodiless /tasks/:id routes.
func callerAndTask(c *fiber.Ctx) (string, int64, error) {
	user, err := caller(c)
	if err != nil {
		return "", 0, err
	}
	id, err := taskID(c)
	return user, id, err
}

// taskID parses the :id path parameter. Anything but a positive decimal
// int64 without sign or leading zeros is 404, like a missing task.
func taskID(c *fiber.Ctx) (int64, error) {
	p := c.Params("id")
	if p == "" || p[0] == '0' || strings.TrimLeft(p, "0123456789") != "" {
		return 0, errNotFound()
	}
	id, err := strconv.ParseInt(p, 10, 64)
	if err != nil {
		return 0, errNotFound()
	}
	return id, nil
}

// query returns a copy of a query parameter (Fiber's strings are reused
// after the request).
func query(c *fiber.Ctx, name string) string { return strings.Clone(c.Query(name)) }
