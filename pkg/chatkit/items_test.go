package chatkit_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/chat"
	"github.com/taskchat/taskchat/pkg/chatkit"
	"github.com/taskchat/taskchat/pkg/dbtest"
)

var testDB *dbtest.Database

func TestMain(m *testing.M) { os.Exit(dbtest.Run(m, "chatkit", &testDB)) }

// turn stores one exchange in conversation conv ("" for a new one): the
// user's message, answered with text and calls, and returns the
// conversation's id.
func turn(t *testing.T, s *chat.Store, user, conv, message, text string, calls ...chat.ToolCall) string {
	t.Helper()
	ctx := context.Background()
	tr, err := s.CreateTurn(ctx, user, chat.NewTurn{ConversationID: conv, Message: message})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ClaimRun(ctx, user, tr.Run.ID, "w", time.Minute); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.FinishRun(ctx, user, tr.Run.ID, "w", chat.Finish{Status: chat.RunCompleted,
		Answer: &chat.Answer{Content: text, ToolCalls: calls, Model: "offline"}})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Conversation.ID
}

func call(title string) chat.ToolCall {
	return chat.ToolCall{ID: "c-" + title, Name: "add_task", Arguments: json.RawMessage(`{"title":"` + title + `"}`),
		Result: json.RawMessage(`{"task_id":1,"status":"created","title":"` + title + `"}`)}
}

// itemIDs names items by kind and text: "u:hi", "a:Done", "w:Added 'X'".
func itemIDs(items []chatkit.ThreadItem) []string {
	out := make([]string, len(items))
	for i, it := range items {
		switch it := it.(type) {
		case *chatkit.UserMessageItem:
			out[i] = "u:" + it.Content[0].Text
		case *chatkit.AssistantMessageItem:
			out[i] = "a:" + it.Content[0].Text
		case *chatkit.WorkflowItem:
			out[i] = "w:" + it.Workflow.Tasks[0].Title
		default:
			out[i] = fmt.Sprintf("%T", it)
		}
	}
	return out
}

func TestItemsOf(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	base := chat.Message{ID: "m", ConversationID: "c", CreatedAt: at, ToolCalls: []chat.ToolCall{}}
	user, answer, callsOnly, both := base, base, base, base
	user.Role, user.Content = chat.RoleUser, "hi"
	answer.Role, answer.Content = chat.RoleAssistant, "Hello"
	callsOnly.Role, callsOnly.ToolCalls = chat.RoleAssistant, []chat.ToolCall{call("A")}
	both.Role, both.Content, both.ToolCalls = chat.RoleAssistant, "Done", []chat.ToolCall{call("A"), call("B")}
	empty := base
	empty.Role = chat.RoleAssistant // a cancelled run that said nothing
	for _, tc := range []struct {
		name string
		m    chat.Message
		want []string
		ids  []string
	}{
		{"user", user, []string{"u:hi"}, []string{"m"}},
		{"answer", answer, []string{"a:Hello"}, []string{"m"}},
		{"calls only", callsOnly, []string{"w:Added 'A'"}, []string{"wf_m"}},
		{"calls and text", both, []string{"w:Added 'A'", "a:Done"}, []string{"wf_m", "m"}},
		{"nothing said", empty, []string{"a:"}, []string{"m"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			items := chatkit.ItemsOf(tc.m)
			if got := itemIDs(items); !slices.Equal(got, tc.want) {
				t.Errorf("items %v, want %v", got, tc.want)
			}
			var ids []string
			for _, it := range items {
				ids = append(ids, it.ItemID())
				if chatkit.MessageID(it.ItemID()) != "m" {
					t.Errorf("MessageID(%q) = %q", it.ItemID(), chatkit.MessageID(it.ItemID()))
				}
				if _, wf := it.(*chatkit.WorkflowItem); chatkit.IsWorkflowID(it.ItemID()) != wf {
					t.Errorf("IsWorkflowID(%q) = %v", it.ItemID(), !wf)
				}
			}
			if !slices.Equal(ids, tc.ids) {
				t.Errorf("ids %v, want %v", ids, tc.ids)
			}
		})
	}
}

func TestListItems(t *testing.T) {
	ctx := context.Background()
	s := chat.NewStore(testDB.DB)
	user := dbtest.CreateUser(t, testDB.DB, "")
	// 4 exchanges, 9 items: u, a | u, w, a | u, w | u, a.
	conv := turn(t, s, user, "", "one", "First")
	turn(t, s, user, conv, "two", "Second", call("X"))
	turn(t, s, user, conv, "three", "", call("Y"))
	turn(t, s, user, conv, "four", "Fourth")
	asc := []string{"u:one", "a:First", "u:two", "w:Added 'X'", "a:Second", "u:three", "w:Added 'Y'", "u:four", "a:Fourth"}
	desc := slices.Clone(asc)
	slices.Reverse(desc)

	for _, tc := range []struct {
		order string
		want  []string
	}{{chat.OrderAsc, asc}, {chat.OrderDesc, desc}, {"", desc}} {
		for _, limit := range []int{1, 2, 3, 4, 9, 50} {
			t.Run(fmt.Sprintf("order %q limit %d", tc.order, limit), func(t *testing.T) {
				var got []string
				p := chatkit.PageParams{Limit: &limit, Order: tc.order}
				for pages := 1; ; pages++ {
					if pages > 20 {
						t.Fatal("no end of pages")
					}
					pg, err := chatkit.ListItems(ctx, s, user, conv, p)
					if err != nil {
						t.Fatalf("page %d: %v", pages, err)
					}
					got = append(got, itemIDs(pg.Data)...)
					if !pg.HasMore {
						if pg.After != nil {
							t.Errorf("last page %d has after %q", pages, *pg.After)
						}
						break
					}
					if len(pg.Data) != limit || pg.After == nil || *pg.After != pg.Data[len(pg.Data)-1].ItemID() {
						t.Fatalf("page %d: %d items, after %v, has more", pages, len(pg.Data), pg.After)
					}
					p.After = *pg.After
				}
				if !slices.Equal(got, tc.want) {
					t.Errorf("walked %v\nwant   %v", got, tc.want)
				}
			})
		}
	}

	t.Run("an empty thread", func(t *testing.T) {
		// A conversation whose only run was cancelled before answering
		// has just the user's item.
		tr, err := s.CreateTurn(ctx, user, chat.NewTurn{Message: "alone"})
		if err != nil {
			t.Fatal(err)
		}
		pg, err := chatkit.ListItems(ctx, s, user, tr.Conversation.ID, chatkit.PageParams{})
		if err != nil || pg.HasMore || pg.After != nil || !slices.Equal(itemIDs(pg.Data), []string{"u:alone"}) {
			t.Errorf("ListItems = %+v, %v", pg, err)
		}
	})

	t.Run("unknown after", func(t *testing.T) {
		first, err := chatkit.ListItems(ctx, s, user, conv, chatkit.PageParams{Order: chat.OrderAsc})
		if err != nil {
			t.Fatal(err)
		}
		userItem := first.Data[0].ItemID()
		for _, after := range []string{"wf_" + userItem, "not-an-id", "0195f3a0-0000-7000-8000-000000000000", chatkit.WorkflowID(first.Data[1].ItemID())} {
			if _, err := chatkit.ListItems(ctx, s, user, conv, chatkit.PageParams{After: after}); !errors.Is(err, chat.ErrNotFound) {
				t.Errorf("after %q: error %v, want ErrNotFound", after, err)
			}
		}
		// An item of another of the user's threads is not in this one.
		other := turn(t, s, user, "", "elsewhere", "There")
		op, err := chatkit.ListItems(ctx, s, user, other, chatkit.PageParams{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := chatkit.ListItems(ctx, s, user, conv, chatkit.PageParams{After: op.Data[0].ItemID()}); !errors.Is(err, chat.ErrNotFound) {
			t.Errorf("after an item of another thread: %v, want ErrNotFound", err)
		}
	})

	t.Run("another user", func(t *testing.T) {
		stranger := dbtest.CreateUser(t, testDB.DB, "")
		first, err := chatkit.ListItems(ctx, s, user, conv, chatkit.PageParams{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := chatkit.ListItems(ctx, s, stranger, conv, chatkit.PageParams{}); !errors.Is(err, chat.ErrNotFound) {
			t.Errorf("stranger lists the thread: %v", err)
		}
		mine := turn(t, s, stranger, "", "mine", "Yours")
		if _, err := chatkit.ListItems(ctx, s, stranger, mine, chatkit.PageParams{After: first.Data[0].ItemID()}); !errors.Is(err, chat.ErrNotFound) {
			t.Errorf("stranger pages after the user's item: %v", err)
		}
	})

	t.Run("invalid params", func(t *testing.T) {
		neg := -1
		_, err := chatkit.ListItems(ctx, s, user, conv, chatkit.PageParams{Limit: &neg})
		wantInvalid(t, err, "params.limit")
	})
}

func TestThreadsPage(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	convs := []chat.Conversation{{ID: "a", Title: "A", CreatedAt: at}, {ID: "b", CreatedAt: at}}
	for _, tc := range []struct {
		more      bool
		wantAfter string
	}{{true, `"after":"b"`}, {false, ""}} {
		b, err := json.Marshal(chatkit.Threads(convs, tc.more))
		if err != nil {
			t.Fatal(err)
		}
		want := `{"data":[` +
			`{"id":"a","title":"A","created_at":"2026-01-01T00:00:00Z","status":{"type":"active"},"metadata":{},"items":{"data":[],"has_more":false}},` +
			`{"id":"b","created_at":"2026-01-01T00:00:00Z","status":{"type":"active"},"metadata":{},"items":{"data":[],"has_more":false}}],` +
			fmt.Sprintf(`"has_more":%v`, tc.more)
		if tc.wantAfter != "" {
			want += "," + tc.wantAfter
		}
		want += "}"
		if string(b) != want {
			t.Errorf("more %v:\n got %s\nwant %s", tc.more, b, want)
		}
	}
	if b, _ := json.Marshal(chatkit.Threads(nil, false)); string(b) != `{"data":[],"has_more":false}` {
		t.Errorf("no threads: %s", b)
	}
}
