package chat_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/taskchat/taskchat/pkg/chat"
	"github.com/taskchat/taskchat/pkg/dbtest"
)

func TestRenameConversation(t *testing.T) {
	ctx := context.Background()
	s, user := newStore(t)
	turn := mustTurn(t, s, user, "", "hello")
	t.Run("trimmed and stored", func(t *testing.T) {
		c, err := s.RenameConversation(ctx, user, turn.Conversation.ID, "  Shopping 🛒  ")
		if err != nil {
			t.Fatal(err)
		}
		if c.Title != "Shopping 🛒" || !c.UpdatedAt.After(turn.Conversation.UpdatedAt) || !c.CreatedAt.Equal(turn.Conversation.CreatedAt) {
			t.Errorf("renamed %+v", c)
		}
		if got, _ := s.GetConversation(ctx, user, turn.Conversation.ID); got.Title != "Shopping 🛒" {
			t.Errorf("stored title %q", got.Title)
		}
	})
	t.Run("longest title", func(t *testing.T) {
		if _, err := s.RenameConversation(ctx, user, turn.Conversation.ID, strings.Repeat("ж", 200)); err != nil {
			t.Fatal(err)
		}
	})
	for _, title := range []string{"", "   ", strings.Repeat("ж", 201), "a\x00", "\xc3"} {
		t.Run(fmt.Sprintf("invalid %q", title), func(t *testing.T) {
			_, err := s.RenameConversation(ctx, user, turn.Conversation.ID, title)
			wantFields(t, err, "title")
		})
	}
	t.Run("unknown", func(t *testing.T) {
		_, err := s.RenameConversation(ctx, user, "0190a0a0-0000-7000-8000-000000000000", "x")
		wantErr(t, err, chat.ErrNotFound)
		_, err = s.RenameConversation(ctx, user, "nope", "x")
		wantErr(t, err, chat.ErrNotFound)
	})
}

func TestListConversations(t *testing.T) {
	ctx := context.Background()
	s, user := newStore(t)
	a := mustTurn(t, s, user, "", "alpha")
	b := mustTurn(t, s, user, "", "bravo")
	c := mustTurn(t, s, user, "", "charlie")
	long := strings.Repeat("ü", 150)
	answer(t, s, user, a.Run.ID, long) // a is now the most recently updated
	page, err := s.ListConversations(ctx, user, chat.ListParams{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, conv := range page.Conversations {
		ids = append(ids, conv.ID)
		wantUTC(t, "conversation", conv.CreatedAt, conv.UpdatedAt)
	}
	if want := []string{a.Conversation.ID, c.Conversation.ID, b.Conversation.ID}; !slices.Equal(ids, want) {
		t.Fatalf("order %v, want %v", ids, want)
	}
	if page.NextCursor != "" {
		t.Errorf("next cursor %q on the only page", page.NextCursor)
	}
	if p := page.Conversations[0].LastMessagePreview; p == nil || *p != strings.Repeat("ü", chat.PreviewLen) {
		t.Errorf("preview of a: %v", p)
	}
	if p := page.Conversations[1].LastMessagePreview; p == nil || *p != "charlie" {
		t.Errorf("preview of c: %v", p)
	}
	t.Run("order other than desc", func(t *testing.T) {
		_, err := s.ListConversations(ctx, user, chat.ListParams{Order: chat.OrderAsc})
		wantFields(t, err, "order")
		if _, err := s.ListConversations(ctx, user, chat.ListParams{Order: chat.OrderDesc}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("another user sees none", func(t *testing.T) {
		other := dbtest.CreateUser(t, testDB.DB, "")
		page, err := s.ListConversations(ctx, other, chat.ListParams{})
		if err != nil || len(page.Conversations) != 0 || page.NextCursor != "" {
			t.Fatalf("page %+v, %v", page, err)
		}
	})
}

func TestListConversationsPaging(t *testing.T) {
	ctx := context.Background()
	s, user := newStore(t)
	const n = 23
	var convs []string
	for i := range n {
		convs = append(convs, mustTurn(t, s, user, "", fmt.Sprintf("conversation %d", i)).Conversation.ID)
	}
	// Ties on updated_at, so the id tie-breaker decides between them.
	if _, err := testDB.DB.NewRaw(`UPDATE conversations c
		SET updated_at = timestamptz '2026-03-01 00:00:00.123456+00' + (x.n % 4) * interval '1 microsecond'
		FROM (SELECT id, row_number() OVER (ORDER BY md5(id::text)) AS n FROM conversations WHERE user_id = ?) x
		WHERE c.id = x.id`, user).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	var want []string
	if err := testDB.DB.NewRaw("SELECT id FROM conversations WHERE user_id = ? ORDER BY updated_at DESC, id DESC", user).Scan(ctx, &want); err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int{1, 5, 22, 23, 200} {
		t.Run(fmt.Sprintf("limit %d", limit), func(t *testing.T) {
			var got []string
			p := chat.ListParams{Limit: limit}
			for pages := 0; ; pages++ {
				if pages > n+1 {
					t.Fatal("no end of pages")
				}
				page, err := s.ListConversations(ctx, user, p)
				if err != nil {
					t.Fatalf("page %d: %v", pages+1, err)
				}
				for _, c := range page.Conversations {
					got = append(got, c.ID)
				}
				if page.NextCursor == "" {
					break
				}
				if len(page.Conversations) != limit {
					t.Fatalf("page %d has %d rows and a next cursor", pages+1, len(page.Conversations))
				}
				p.Cursor = page.NextCursor
			}
			if !slices.Equal(got, want) {
				t.Fatalf("walked %v\nwant   %v", got, want)
			}
		})
	}
	if len(want) != len(convs) {
		t.Fatalf("%d conversations stored, want %d", len(want), len(convs))
	}
}

func TestListMessagesPaging(t *testing.T) {
	ctx := context.Background()
	s, user := newStore(t)
	first := mustTurn(t, s, user, "", "m0")
	conv := first.Conversation.ID
	want := []string{"m0"}
	answer(t, s, user, first.Run.ID, "a0")
	want = append(want, "a0")
	for i := 1; i < 12; i++ {
		turn := mustTurn(t, s, user, conv, fmt.Sprintf("m%d", i))
		want = append(want, fmt.Sprintf("m%d", i))
		if i%3 == 0 {
			answer(t, s, user, turn.Run.ID, fmt.Sprintf("a%d", i))
			want = append(want, fmt.Sprintf("a%d", i))
		} else {
			// Leave it unanswered, and cancel it so the next can run.
			if _, err := s.CancelRun(ctx, user, turn.Run.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	desc := slices.Clone(want)
	slices.Reverse(desc)
	for _, tc := range []struct {
		order string
		want  []string
	}{{"", want}, {chat.OrderAsc, want}, {chat.OrderDesc, desc}} {
		for _, limit := range []int{1, 4, 16, 50} {
			t.Run(fmt.Sprintf("order %q limit %d", tc.order, limit), func(t *testing.T) {
				got := walkMessages(t, s, user, conv, chat.ListParams{Order: tc.order, Limit: limit}, false)
				if !slices.Equal(got, tc.want) {
					t.Fatalf("walked %v\nwant   %v", got, tc.want)
				}
			})
		}
	}
	t.Run("messages are complete", func(t *testing.T) {
		page, err := s.ListMessages(ctx, user, conv, chat.ListParams{Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		u, a := page.Messages[0], page.Messages[1]
		if u.Role != chat.RoleUser || u.RunID != first.Run.ID || u.ID != first.Message.ID || u.ToolCalls == nil {
			t.Errorf("user message %+v", u)
		}
		if a.Role != chat.RoleAssistant || a.RunID != first.Run.ID || a.ID != first.Run.AssistantMessageID || a.Model != "offline" || a.ToolCalls == nil {
			t.Errorf("assistant message %+v", a)
		}
		wantUTC(t, "messages", u.CreatedAt, a.CreatedAt)
	})
}

// walkMessages lists every page of a conversation's messages and returns
// their contents in order. Each page starts at the previous one's
// NextCursor, or with byAfter after its last message (ListParams.After).
func walkMessages(t *testing.T, s *chat.Store, user, conv string, p chat.ListParams, byAfter bool) []string {
	t.Helper()
	var got []string
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatal("no end of pages")
		}
		page, err := s.ListMessages(context.Background(), user, conv, p)
		if err != nil {
			t.Fatalf("page %d: %v", pages+1, err)
		}
		for _, m := range page.Messages {
			got = append(got, m.Content)
		}
		if page.NextCursor == "" {
			return got
		}
		if len(page.Messages) != p.Limit {
			t.Fatalf("page %d has %d messages and a next cursor", pages+1, len(page.Messages))
		}
		if byAfter {
			p.After = page.Messages[len(page.Messages)-1].ID
		} else {
			p.Cursor = page.NextCursor
		}
	}
}

func TestListInvalid(t *testing.T) {
	ctx := context.Background()
	s, user := newStore(t)
	a := mustTurn(t, s, user, "", "a")
	mustTurn(t, s, user, a.Conversation.ID, "a2")
	b := mustTurn(t, s, user, "", "b")
	mustTurn(t, s, user, b.Conversation.ID, "b2")
	convPage, err := s.ListConversations(ctx, user, chat.ListParams{Limit: 1})
	if err != nil || convPage.NextCursor == "" {
		t.Fatalf("conversations: %+v, %v", convPage, err)
	}
	msgPage, err := s.ListMessages(ctx, user, a.Conversation.ID, chat.ListParams{Limit: 1})
	if err != nil || msgPage.NextCursor == "" {
		t.Fatalf("messages: %+v, %v", msgPage, err)
	}
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	listConvs := func(p chat.ListParams) error { _, err := s.ListConversations(ctx, user, p); return err }
	listMsgs := func(conv string) func(chat.ListParams) error {
		return func(p chat.ListParams) error { _, err := s.ListMessages(ctx, user, conv, p); return err }
	}
	tests := []struct {
		name   string
		list   func(chat.ListParams) error
		p      chat.ListParams
		fields []string
	}{
		{"negative limit", listConvs, chat.ListParams{Limit: -1}, []string{"limit"}},
		{"limit 201", listMsgs(a.Conversation.ID), chat.ListParams{Limit: 201}, []string{"limit"}},
		{"unknown order", listMsgs(a.Conversation.ID), chat.ListParams{Order: "up"}, []string{"order"}},
		{"limit and order", listMsgs(a.Conversation.ID), chat.ListParams{Limit: 500, Order: "up", Cursor: "!"}, []string{"limit", "order"}},
		{"cursor not base64", listConvs, chat.ListParams{Cursor: "!!!"}, []string{"cursor"}},
		{"cursor not JSON", listConvs, chat.ListParams{Cursor: b64("nope")}, []string{"cursor"}},
		{"cursor too long", listConvs, chat.ListParams{Cursor: strings.Repeat("A", 2000)}, []string{"cursor"}},
		{"cursor with unknown field", listConvs, chat.ListParams{Cursor: b64(`{"l":"conversations","t":1,"id":"0190a0a0-0000-7000-8000-000000000000","x":1}`)}, []string{"cursor"}},
		{"cursor with bad id", listConvs, chat.ListParams{Cursor: b64(`{"l":"conversations","t":1,"id":"x"}`)}, []string{"cursor"}},
		{"message cursor for conversations", listConvs, chat.ListParams{Cursor: msgPage.NextCursor}, []string{"cursor"}},
		{"conversation cursor for messages", listMsgs(a.Conversation.ID), chat.ListParams{Cursor: convPage.NextCursor}, []string{"cursor"}},
		{"cursor of another conversation", listMsgs(b.Conversation.ID), chat.ListParams{Cursor: msgPage.NextCursor}, []string{"cursor"}},
		{"cursor of another order", listMsgs(a.Conversation.ID), chat.ListParams{Order: chat.OrderDesc, Cursor: msgPage.NextCursor}, []string{"cursor"}},
		{"message cursor with zero seq", listMsgs(a.Conversation.ID), chat.ListParams{Cursor: b64(`{"l":"messages ` + a.Conversation.ID + ` asc","s":0}`)}, []string{"cursor"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantFields(t, tc.list(tc.p), tc.fields...)
		})
	}
	t.Run("valid cursors work", func(t *testing.T) {
		if err := listConvs(chat.ListParams{Cursor: convPage.NextCursor}); err != nil {
			t.Error(err)
		}
		if err := listMsgs(a.Conversation.ID)(chat.ListParams{Cursor: msgPage.NextCursor}); err != nil {
			t.Error(err)
		}
	})
	t.Run("unknown conversation", func(t *testing.T) {
		wantErr(t, listMsgs("0190a0a0-0000-7000-8000-000000000000")(chat.ListParams{}), chat.ErrNotFound)
		wantErr(t, listMsgs("nope")(chat.ListParams{}), chat.ErrNotFound)
	})
}

func TestDeleteConversation(t *testing.T) {
	ctx := context.Background()
	s, user := newStore(t)
	done := mustTurn(t, s, user, "", "answered")
	conv := done.Conversation.ID
	mustClaim(t, s, user, done.Run.ID, "w", chat.ClaimOK)
	if _, _, err := s.RecordToolCall(ctx, user, done.Run.ID, chat.LedgerEntry{Name: "add_task", CallID: "c1"}); err != nil {
		t.Fatal(err)
	}
	mustComplete(t, s, user, done.Run.ID, "w", "ok")
	running := mustTurn(t, s, user, conv, "running")
	mustClaim(t, s, user, running.Run.ID, "w", chat.ClaimOK)
	queued := mustTurn(t, s, user, conv, "queued")
	cancelled := mustTurn(t, s, user, conv, "cancelled")
	if _, err := s.CancelRun(ctx, user, cancelled.Run.ID); err != nil {
		t.Fatal(err)
	}
	keep := mustTurn(t, s, user, "", "another conversation")
	other, otherUser := newStore(t)
	foreign := mustTurn(t, other, otherUser, "", "not yours")
	foreignBefore := snapshot(t, otherUser)

	t.Run("another user's conversation", func(t *testing.T) {
		_, err := other.DeleteConversation(ctx, otherUser, conv)
		wantErr(t, err, chat.ErrNotFound)
	})
	ids, err := s.DeleteConversation(ctx, user, conv)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{running.Run.ID, queued.Run.ID}; !slices.Equal(ids, want) {
		t.Errorf("unfinished runs %v, want %v", ids, want)
	}
	for table, n := range map[string]int{
		"conversations": count(t, "SELECT count(*) FROM conversations WHERE id = ?", conv),
		"messages":      count(t, "SELECT count(*) FROM messages WHERE conversation_id = ?", conv),
		"runs":          count(t, "SELECT count(*) FROM runs WHERE conversation_id = ?", conv),
		"tool_rounds":   count(t, "SELECT count(*) FROM tool_rounds WHERE run_id = ?", done.Run.ID),
	} {
		if n != 0 {
			t.Errorf("%d %s rows left", n, table)
		}
	}
	if _, err := s.GetConversation(ctx, user, keep.Conversation.ID); err != nil {
		t.Errorf("the other conversation: %v", err)
	}
	if after := snapshot(t, otherUser); after != foreignBefore {
		t.Error("another user's rows changed")
	}
	if _, err := other.GetConversation(ctx, otherUser, foreign.Conversation.ID); err != nil {
		t.Error(err)
	}
	t.Run("the worker finds its run gone", func(t *testing.T) {
		_, err := s.RenewLease(ctx, user, running.Run.ID, "w", lease)
		wantErr(t, err, chat.ErrNotFound)
		_, _, err = s.FinishRun(ctx, user, running.Run.ID, "w", chat.Finish{Status: chat.RunCompleted, Answer: &chat.Answer{Content: "late"}})
		wantErr(t, err, chat.ErrNotFound)
		mustClaim(t, s, user, queued.Run.ID, "w2", chat.ClaimGone)
	})
	t.Run("twice", func(t *testing.T) {
		_, err := s.DeleteConversation(ctx, user, conv)
		wantErr(t, err, chat.ErrNotFound)
	})
	t.Run("none unfinished", func(t *testing.T) {
		ids, err := s.DeleteConversation(ctx, user, keep.Conversation.ID)
		if err != nil || len(ids) != 1 || ids[0] != keep.Run.ID {
			t.Fatalf("ids %v, %v", ids, err)
		}
		fresh := mustTurn(t, s, user, "", "to cancel")
		if _, err := s.CancelRun(ctx, user, fresh.Run.ID); err != nil {
			t.Fatal(err)
		}
		ids, err = s.DeleteConversation(ctx, user, fresh.Conversation.ID)
		if err != nil || ids == nil || len(ids) != 0 {
			t.Fatalf("ids %#v, %v; want an empty list", ids, err)
		}
	})
	t.Run("a turn into the deleted conversation", func(t *testing.T) {
		_, err := s.CreateTurn(ctx, user, chat.NewTurn{ConversationID: conv, Message: "hello?"})
		wantErr(t, err, chat.ErrNotFound)
	})
}

func contentFeedback(m chat.Message) string { return m.Content + ":" + m.Feedback }

func TestSetFeedback(t *testing.T) {
	ctx := context.Background()
	s, user := newStore(t)
	t1 := mustTurn(t, s, user, "", "m1")
	conv := t1.Conversation.ID
	a1 := answer(t, s, user, t1.Run.ID, "a1")
	t2 := mustTurn(t, s, user, conv, "m2")
	a2 := answer(t, s, user, t2.Run.ID, "a2")
	other := mustTurn(t, s, user, "", "elsewhere")
	a3 := answer(t, s, user, other.Run.ID, "a3")
	stranger := newUserOnly(t)
	foreign := mustTurn(t, s, stranger, "", "theirs")
	foreignAnswer := answer(t, s, stranger, foreign.Run.ID, "their answer")

	if got, want := messageStrings(t, s, user, conv, contentFeedback), []string{"m1:", "a1:", "m2:", "a2:"}; !slices.Equal(got, want) {
		t.Fatalf("before any feedback %v", got)
	}
	if err := s.SetFeedback(ctx, user, conv, []string{a1.ID, a2.ID, a1.ID}, chat.FeedbackPositive); err != nil {
		t.Fatal(err)
	}
	if err := s.SetFeedback(ctx, user, conv, []string{a2.ID}, chat.FeedbackNegative); err != nil {
		t.Fatal(err)
	}
	want := []string{"m1:", "a1:positive", "m2:", "a2:negative"}
	if got := messageStrings(t, s, user, conv, contentFeedback); !slices.Equal(got, want) {
		t.Fatalf("feedback %v, want %v", got, want)
	}
	if err := s.SetFeedback(ctx, user, conv, nil, chat.FeedbackNegative); err != nil {
		t.Errorf("no items: %v", err)
	}

	mine, theirs := snapshot(t, user), snapshot(t, stranger)
	for _, tc := range []struct {
		name, user, conv string
		ids              []string
	}{
		{"one message of another conversation", user, conv, []string{a1.ID, a3.ID}},
		{"one message of another user", user, conv, []string{a2.ID, foreignAnswer.ID}},
		{"one unknown message", user, conv, []string{a1.ID, "0195f3a0-0000-7000-8000-000000000000"}},
		{"one id that is not an id", user, conv, []string{a1.ID, "wf_" + a1.ID}},
		{"another user's conversation", stranger, conv, []string{a1.ID}},
		{"another user's conversation, no items", stranger, conv, nil},
		{"unknown conversation", user, "0195f3a0-0000-7000-8000-000000000000", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.SetFeedback(ctx, tc.user, tc.conv, tc.ids, chat.FeedbackNegative)
			wantErr(t, err, chat.ErrNotFound)
		})
	}
	t.Run("invalid", func(t *testing.T) {
		wantFields(t, s.SetFeedback(ctx, user, conv, []string{a1.ID}, "meh"), "kind")
		wantFields(t, s.SetFeedback(ctx, user, conv, make([]string, chat.MaxLimit+1), ""), "kind", "item_ids")
	})
	if snapshot(t, user) != mine || snapshot(t, stranger) != theirs {
		t.Errorf("a refused SetFeedback changed rows")
	}
	if got := messageStrings(t, s, user, conv, contentFeedback); !slices.Equal(got, want) {
		t.Errorf("feedback after refusals %v, want %v", got, want)
	}
}

func TestListMessagesAfter(t *testing.T) {
	ctx := context.Background()
	s, user := newStore(t)
	first := mustTurn(t, s, user, "", "m0")
	conv := first.Conversation.ID
	want := []string{"m0", "a0"}
	answer(t, s, user, first.Run.ID, "a0")
	for i := 1; i < 5; i++ {
		turn := mustTurn(t, s, user, conv, fmt.Sprintf("m%d", i))
		answer(t, s, user, turn.Run.ID, fmt.Sprintf("a%d", i))
		want = append(want, fmt.Sprintf("m%d", i), fmt.Sprintf("a%d", i))
	}
	desc := slices.Clone(want)
	slices.Reverse(desc)
	for _, tc := range []struct {
		order string
		want  []string
	}{{chat.OrderAsc, want}, {chat.OrderDesc, desc}} {
		for _, limit := range []int{1, 3, 10, 50} {
			t.Run(fmt.Sprintf("%s limit %d", tc.order, limit), func(t *testing.T) {
				got := walkMessages(t, s, user, conv, chat.ListParams{Order: tc.order, Limit: limit}, true)
				if !slices.Equal(got, tc.want) {
					t.Fatalf("walked %v\nwant   %v", got, tc.want)
				}
			})
		}
	}
	t.Run("after the last message", func(t *testing.T) {
		page, err := s.ListMessages(ctx, user, conv, chat.ListParams{Order: chat.OrderDesc, Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		next, err := s.ListMessages(ctx, user, conv, chat.ListParams{After: page.Messages[0].ID})
		if err != nil || len(next.Messages) != 0 || next.NextCursor != "" {
			t.Errorf("after the last message: %+v, %v", next, err)
		}
	})
	t.Run("unknown after", func(t *testing.T) {
		other := mustTurn(t, s, user, "", "elsewhere")
		stranger := newUserOnly(t)
		theirs := mustTurn(t, s, stranger, "", "theirs")
		for _, tc := range []struct{ name, user, conv, after string }{
			{"not an id", user, conv, "wf_x"},
			{"no such message", user, conv, "0195f3a0-0000-7000-8000-000000000000"},
			{"a message of another conversation", user, conv, other.Message.ID},
			{"another user's message", user, conv, theirs.Message.ID},
			{"the stranger pages the user's conversation", stranger, conv, first.Message.ID},
			{"the stranger pages after the user's message", stranger, theirs.Conversation.ID, first.Message.ID},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := s.ListMessages(ctx, tc.user, tc.conv, chat.ListParams{After: tc.after})
				wantErr(t, err, chat.ErrNotFound)
			})
		}
	})
}

func TestListConversationsByCreation(t *testing.T) {
	ctx := context.Background()
	s, user := newStore(t)
	var created []string
	for i := range 7 {
		created = append(created, mustTurn(t, s, user, "", fmt.Sprintf("c%d", i)).Conversation.ID)
	}
	// Activity moves a conversation in the REST list, never in this one.
	mustTurn(t, s, user, created[0], "later")
	if _, err := s.RenameConversation(ctx, user, created[3], "renamed"); err != nil {
		t.Fatal(err)
	}
	stranger := newUserOnly(t)
	theirs := mustTurn(t, s, stranger, "", "theirs").Conversation.ID

	newest := slices.Clone(created)
	slices.Reverse(newest)
	for _, tc := range []struct {
		order string
		want  []string
	}{{"", newest}, {chat.OrderDesc, newest}, {chat.OrderAsc, created}} {
		for _, limit := range []int{1, 2, 7, 0} {
			t.Run(fmt.Sprintf("order %q limit %d", tc.order, limit), func(t *testing.T) {
				var got []string
				p := chat.ListParams{Order: tc.order, Limit: limit}
				for pages := 1; ; pages++ {
					if pages > 20 {
						t.Fatal("no end of pages")
					}
					convs, more, err := s.ListConversationsByCreation(ctx, user, p)
					if err != nil {
						t.Fatal(err)
					}
					for _, c := range convs {
						got = append(got, c.ID)
						if c.ID == created[3] && c.Title != "renamed" {
							t.Errorf("conversation %s has title %q", c.ID, c.Title)
						}
					}
					if !more {
						break
					}
					if len(convs) != limit {
						t.Fatalf("page %d has %d conversations and more", pages, len(convs))
					}
					p.After = convs[len(convs)-1].ID
				}
				if !slices.Equal(got, tc.want) {
					t.Errorf("walked %v\nwant   %v", got, tc.want)
				}
			})
		}
	}
	t.Run("the stranger sees none of them", func(t *testing.T) {
		convs, more, err := s.ListConversationsByCreation(ctx, stranger, chat.ListParams{})
		if err != nil || more || len(convs) != 1 || convs[0].ID != theirs {
			t.Errorf("stranger's list %+v, %v, %v", convs, more, err)
		}
		_, _, err = s.ListConversationsByCreation(ctx, stranger, chat.ListParams{After: created[0]})
		wantErr(t, err, chat.ErrNotFound)
	})
	t.Run("refused", func(t *testing.T) {
		for _, after := range []string{theirs, "x", "0195f3a0-0000-7000-8000-000000000000"} {
			_, _, err := s.ListConversationsByCreation(ctx, user, chat.ListParams{After: after})
			wantErr(t, err, chat.ErrNotFound)
		}
		_, _, err := s.ListConversationsByCreation(ctx, user, chat.ListParams{Limit: chat.MaxLimit + 1, Order: "up"})
		wantFields(t, err, "limit", "order")
	})
}

func TestGetMessage(t *testing.T) {
	ctx := context.Background()
	s, user := newStore(t)
	turn := mustTurn(t, s, user, "", "hello")
	ans := answer(t, s, user, turn.Run.ID, "hi")
	other := mustTurn(t, s, user, "", "elsewhere")
	stranger := newUserOnly(t)
	for _, id := range []string{turn.Message.ID, ans.ID} {
		m, err := s.GetMessage(ctx, user, turn.Conversation.ID, id)
		if err != nil || m.ID != id || m.ConversationID != turn.Conversation.ID || m.ToolCalls == nil {
			t.Errorf("GetMessage(%s) = %+v, %v", id, m, err)
		}
	}
	for _, tc := range []struct{ name, user, conv, id string }{
		{"a message of another conversation", user, turn.Conversation.ID, other.Message.ID},
		{"the wrong conversation", user, other.Conversation.ID, ans.ID},
		{"another user", stranger, turn.Conversation.ID, ans.ID},
		{"not ids", user, "x", "y"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.GetMessage(ctx, tc.user, tc.conv, tc.id)
			wantErr(t, err, chat.ErrNotFound)
		})
	}
}
