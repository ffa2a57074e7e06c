package agent

import (
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// This file is the offline provider's understanding of one user message:
// parse turns the text into an intent by its leading verb (and a few
// trailing forms like "… is done"), keeping the user's own words for titles.

// intentKind is what the user asked for.
type intentKind int

const (
	intentOther    intentKind = iota // not understood: say what the assistant can do
	intentHelp                       // a greeting or a request for help
	intentThanks                     // thanks, ok, great
	intentAsk                        // understood but incomplete: reply says what is missing
	intentAdd                        // add_task
	intentList                       // list_tasks
	intentComplete                   // complete_task
	intentDelete                     // delete_task
	intentUpdate                     // update_task
)

// ref names a task: by id (id > 0) or by words of its title.
type ref struct {
	id    int64
	words string
}

// target is one reading of "X to Y" in an update: the task and its new text.
type target struct {
	ref   ref
	value string
}

// maxTargets bounds the readings of an update kept for matching, so that a
// long message full of " to " stays cheap.
const maxTargets = 8

// intent is a parsed user message.
type intent struct {
	kind intentKind
	// reply is intentAsk's answer.
	reply string
	// add: the new task.
	title string
	desc  *string
	// list: the status to list.
	status string
	// complete, delete: the task.
	ref ref
	// update: the readings of "X to Y", in the order of the " to " they split
	// at; descField says the new text is the description, not the title.
	targets   []target
	descField bool
}

var (
	spaceRun = regexp.MustCompile(`\s+`)
	idRef    = regexp.MustCompile(`(?i)^(?:task\s*|todo\s*|item\s*|number\s*|no\.?\s*)*#?\s*(\d{1,18})$`)
	// descMarker starts the description in "add call mom, note: birthday" or
	// "add call mom with a description about her birthday"; a bare "notes"
	// ("add write notes for class") is part of the title.
	descMarker = regexp.MustCompile(`(?i)(?:\s*[,;]\s*(?:with\s+(?:a\s+|the\s+)?)?|\s+with\s+(?:a\s+|the\s+)?)(?:description|details|note|notes)\s*[:=]?\s*|\s+(?:description|details|note|notes)\s*[:=]\s*`)
)

// Phrase lists, longest first where one is a prefix of another.
var (
	greetings = []string{"good morning", "good afternoon", "good evening", "hey there", "hello there", "hi there", "hello", "hiya", "hey", "hi", "yo"}
	fillers   = []string{
		"can you please", "could you please", "would you please", "will you please",
		"i want you to", "i'd like you to", "i need you to", "i would like you to",
		"can you", "could you", "would you", "will you", "please", "pls", "kindly", "ok so", "okay so", "ok", "okay", "so", "now", "also", "and",
	}
	trailers  = []string{"please", "thanks", "thank you", "thx", "for me", "now"}
	helpWords = []string{
		"help", "help me", "what can you do", "what do you do", "how does this work", "how do i use this",
		"how do you work", "who are you", "what are you", "commands", "menu", "options", "start",
	}
	thanksWords = []string{
		"thanks", "thank you", "thank you so much", "thanks a lot", "thx", "ty", "cheers", "great", "cool", "nice",
		"perfect", "awesome", "ok", "okay", "got it", "good", "ok thanks", "great thanks", "bye", "goodbye",
	}

	updateVerbs   = []string{"rename", "change", "update", "edit", "modify", "retitle", "set"}
	deleteVerbs   = []string{"get rid of", "forget about", "delete", "remove", "cancel", "drop", "erase", "trash", "discard", "forget", "scrap", "scratch"}
	completeVerbs = []string{
		"i'm done with", "im done with", "i am done with", "i'm finished with", "i am finished with", "done with", "finished with",
		"i've finished", "ive finished", "i have finished", "i finished", "i've completed", "ive completed", "i have completed",
		"i completed", "i've done", "i have done", "i did", "check off", "tick off", "cross off",
		"complete", "finish", "finished", "close", "done",
	}
	// markVerbs need a completion suffix ("mark X as done", "check X off").
	markVerbs      = []string{"mark", "check", "tick", "cross", "set", "flag"}
	doneSuffixes   = []string{"as done", "as complete", "as completed", "as finished", "as checked", "done", "complete", "completed", "finished", "off", "checked"}
	undoneSuffixes = []string{"as not done", "not done", "as undone", "undone", "as incomplete", "incomplete", "as pending", "pending", "as open", "as not completed", "not completed", "as todo", "as to do", "unchecked"}
	doneTrailers   = []string{"is done", "are done", "is finished", "are finished", "is complete", "is completed", "is all done", "done", "finished", "completed"}
	addVerbs       = []string{
		"don't let me forget to", "dont let me forget to", "don't forget to", "dont forget to", "remind me to", "remind me about",
		"remind me", "remember to", "remember", "i need to", "i have to", "i've got to", "i must", "i should", "i gotta",
		"add", "create", "new", "make a task", "make a note", "make a reminder", "put", "note down", "note", "jot down", "write down", "todo:", "to do:", "to-do:",
	}
	// taskNouns may follow an add verb: "add a task to call mom".
	taskNouns = []string{"a new task", "a new todo", "a new to-do", "a new item", "new task", "a task", "a todo", "a to-do", "a reminder", "an item", "a note", "task", "todo", "to-do", "item", "reminder"}
	nounLinks = []string{"called", "named", "titled", "that says", "saying", "to", "for", ":", "-"}
	listTails = []string{"to my to-do list", "to my todo list", "to my task list", "to the to-do list", "to the todo list", "to the list", "to my list", "to my tasks", "on my to-do list", "on my todo list", "on the list", "on my list", "to-do", "to do list"}
	fromTails = []string{"from my to-do list", "from my todo list", "from the list", "from my list", "from my tasks", "from the to-do list"}
	listVerbs = []string{"show me", "show", "list", "display", "view", "see my", "read my", "get my", "let me see", "check my"}
	// questions (and requests) list only when they mention tasks: "what's
	// left?" does, "what's the weather?" and "tell me a joke" do not.
	questions = []string{"what's", "whats", "what is", "what are", "what", "which", "how many", "do i have", "have i", "did i",
		"is there", "are there", "anything", "any", "give me", "tell me", "read me", "print"}
	taskTopics = []string{"task", "todo", "to-do", "to do", "list", "pending", "left", "open", "remaining", "outstanding", "complete", "done", "finish", "plate", "next", "agenda"}
	allWords   = []string{"all", "everything", "all tasks", "all my tasks", "all of them", "every task", "all completed tasks", "all done tasks", "all the tasks", "all of my tasks"}
)

// stopwords are ignored when matching a task's title to the user's words.
var stopwords = map[string]bool{
	"a": true, "an": true, "the": true, "my": true, "our": true, "your": true, "task": true, "tasks": true,
	"todo": true, "to": true, "do": true, "item": true, "items": true, "one": true, "of": true, "for": true,
	"on": true, "in": true, "at": true, "and": true, "with": true, "about": true, "that": true, "this": true,
	"please": true, "it": true, "list": true,
}

// parse reads one user message.
func parse(text string) intent {
	s := clean(text)
	greeted := false
	for changed := true; changed && s != ""; {
		changed = false
		if rest, ok := cutPrefix(s, greetings...); ok {
			s, greeted, changed = rest, true, true
		}
		if rest, ok := cutPrefix(s, fillers...); ok && rest != "" {
			s, changed = rest, true
		}
	}
	for {
		rest, ok := cutSuffix(s, trailers...)
		if !ok || rest == "" {
			break
		}
		s = rest
	}
	switch {
	case s == "" || isOneOf(s, helpWords):
		return intent{kind: intentHelp}
	case isOneOf(s, thanksWords):
		return intent{kind: intentThanks}
	}
	for _, p := range []func(string) (intent, bool){parseUpdate, parseDelete, parseComplete, parseAdd, parseList, parseDoneTrailer, parseBareList} {
		if in, ok := p(s); ok {
			return in
		}
	}
	if greeted {
		return intent{kind: intentHelp}
	}
	return intent{kind: intentOther}
}

func parseUpdate(s string) (intent, bool) {
	rest, ok := cutPrefix(s, updateVerbs...)
	if !ok {
		return intent{}, false
	}
	in := intent{kind: intentUpdate}
	if r, ok := cutPrefix(rest, "the description of", "the description for", "description of", "description for",
		"the details of", "the note of", "the note on", "the notes of"); ok {
		rest, in.descField = r, true
	} else if r, ok := cutPrefix(rest, "the title of", "the name of", "title of", "name of"); ok {
		rest = r
	}
	for i := 0; i+4 <= len(rest) && len(in.targets) < maxTargets; i++ {
		if !strings.EqualFold(rest[i:i+4], " to ") {
			continue
		}
		left, right := strings.TrimSpace(rest[:i]), unquote(rest[i+4:])
		if left == "" || right == "" {
			continue
		}
		if !in.descField && isOneOf(right, []string{"done", "complete", "completed", "finished"}) {
			return intent{kind: intentComplete, ref: parseRef(left)}, true
		}
		if !in.descField {
			right = capitalize(right)
		}
		in.targets = append(in.targets, target{ref: parseRef(left), value: right})
	}
	if len(in.targets) == 0 {
		if r, ok := cutSuffix(rest, doneSuffixes...); ok {
			// "set task 3 as done"
			return intent{kind: intentComplete, ref: parseRef(r)}, true
		}
		return ask(`What should I change it to? Say for example "rename task 3 to Call mom".`), true
	}
	// A task named by id leaves one reading: the first split after it.
	for _, t := range in.targets {
		if t.ref.id > 0 {
			in.targets = []target{t}
			break
		}
	}
	return in, true
}

func parseDelete(s string) (intent, bool) {
	rest, ok := cutPrefix(s, deleteVerbs...)
	if !ok {
		return intent{}, false
	}
	rest, _ = cutSuffix(rest, fromTails...)
	if isOneOf(rest, allWords) {
		return ask(`I can delete one task at a time. Tell me which one, for example "delete task 3".`), true
	}
	r := parseRef(rest)
	if r.id == 0 && len(tokens(r.words)) == 0 {
		return ask(`Which task should I delete? Say for example "delete task 3" or "delete buy milk".`), true
	}
	return intent{kind: intentDelete, ref: r}, true
}

func parseComplete(s string) (intent, bool) {
	rest, ok := cutPrefix(s, markVerbs...)
	if ok {
		if _, undone := cutSuffix(rest, undoneSuffixes...); undone {
			return ask(`I can't reopen a task yet, sorry. I can add, list, complete, rename and delete tasks.`), true
		}
		rest, ok = cutSuffix(rest, doneSuffixes...)
	}
	if !ok {
		// "check off buy milk" is a complete verb, "check my tasks" a list.
		if rest, ok = cutPrefix(s, completeVerbs...); !ok {
			return intent{}, false
		}
	}
	if isOneOf(rest, allWords) {
		return ask(`I can complete one task at a time. Tell me which one, for example "complete task 3".`), true
	}
	r := parseRef(rest)
	if r.id == 0 && len(tokens(r.words)) == 0 {
		if strings.Contains(strings.ToLower(s), "task") {
			// "completed tasks", "finished tasks": a question, not an action.
			return intent{kind: intentList, status: "completed"}, true
		}
		return ask(`Which task did you finish? Say for example "mark buy milk as done" or "complete task 3".`), true
	}
	return intent{kind: intentComplete, ref: r}, true
}

func parseAdd(s string) (intent, bool) {
	rest, ok := cutPrefix(s, addVerbs...)
	if !ok {
		return intent{}, false
	}
	if r, ok := cutPrefix(rest, taskNouns...); ok {
		rest = r
		if r, ok := cutPrefix(rest, nounLinks...); ok {
			rest = r
		}
	} else if r, ok := cutPrefix(rest, ":", "-"); ok {
		rest = r
	}
	rest, _ = cutSuffix(rest, listTails...)
	in := intent{kind: intentAdd}
	if loc := descMarker.FindStringIndex(rest); loc != nil && loc[0] > 0 {
		d := unquote(rest[loc[1]:])
		in.desc = &d
		rest = rest[:loc[0]]
	}
	in.title = capitalize(unquote(rest))
	if in.title == "" {
		return ask(`What should the task say? For example: "add buy milk".`), true
	}
	return in, true
}

func parseList(s string) (intent, bool) {
	lower := strings.ToLower(s)
	if _, ok := cutPrefix(s, listVerbs...); !ok {
		if _, ok := cutPrefix(s, questions...); !ok || !containsAny(lower, taskTopics) {
			return intent{}, false
		}
	}
	return intent{kind: intentList, status: listStatus(lower)}, true
}

// parseDoneTrailer reads "buy milk is done", "the report finished".
func parseDoneTrailer(s string) (intent, bool) {
	rest, ok := cutSuffix(s, doneTrailers...)
	if !ok {
		return intent{}, false
	}
	r := parseRef(rest)
	if r.id == 0 && len(tokens(r.words)) == 0 {
		return intent{kind: intentList, status: "completed"}, true
	}
	return intent{kind: intentComplete, ref: r}, true
}

// parseBareList reads "tasks", "my to-do list", "pending".
func parseBareList(s string) (intent, bool) {
	words := map[string]bool{"my": true, "the": true, "tasks": true, "task": true, "todo": true, "todos": true, "to": true, "do": true,
		"list": true, "pending": true, "completed": true, "done": true, "open": true, "all": true, "finished": true, "remaining": true}
	for _, w := range strings.FieldsFunc(strings.ToLower(s), notWordRune) {
		if !words[w] {
			return intent{}, false
		}
	}
	return intent{kind: intentList, status: listStatus(strings.ToLower(s))}, true
}

// listStatus picks list_tasks' status from the words of a request.
func listStatus(lower string) string {
	if containsAny(lower, []string{"pending", "left", "open", "remaining", "outstanding", "unfinished", "incomplete", "undone",
		"not done", "not completed", "not finished", "still", "next", "have to do", "need to do", "should i do", "plate", "agenda"}) {
		return "pending"
	}
	if containsAny(lower, []string{"complete", "done", "finish", "checked off"}) {
		return "completed"
	}
	return "all"
}

// parseRef reads a task reference: "task 3", "#3", "3", or words.
func parseRef(s string) ref {
	s = unquote(s)
	if id := refID(s); id > 0 {
		return ref{id: id}
	}
	for {
		rest, a := cutPrefix(s, "the", "my", "a", "an", "task:", "task", "todo", "item")
		rest, b := cutSuffix(rest, "task", "one", "item", "todo", "to-do", "please")
		if !a && !b || rest == "" {
			break
		}
		s = rest
	}
	if id := refID(s); id > 0 {
		return ref{id: id} // "the task #3"
	}
	return ref{words: unquote(s)}
}

// refID returns the id in "task 3", "#3", "3", or 0.
func refID(s string) int64 {
	m := idRef.FindStringSubmatch(s)
	if m == nil {
		return 0
	}
	id, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0
	}
	return id
}

func ask(reply string) intent { return intent{kind: intentAsk, reply: reply} }

// clean trims s, folds runs of white space to one space, makes curly
// apostrophes straight and drops trailing punctuation.
func clean(s string) string {
	s = strings.NewReplacer("\u2019", "'", "\u2018", "'").Replace(s)
	s = strings.TrimSpace(spaceRun.ReplaceAllString(s, " "))
	return strings.TrimRightFunc(s, func(r rune) bool { return r == '.' || r == '!' || r == '?' || r == ' ' })
}

// unquote trims s and the quotes or punctuation around it.
func unquote(s string) string {
	s = strings.TrimSpace(s)
	s = strings.Trim(s, "\"'\u201c\u201d`")
	return strings.TrimSpace(strings.TrimRight(s, ".,;:!?"))
}

// capitalize upper-cases the first letter of s.
func capitalize(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if n == 0 || r == utf8.RuneError {
		return s
	}
	return string(unicode.ToUpper(r)) + s[n:]
}

// cutPrefix removes the first of prefixes that starts s as whole words,
// ignoring case, and the punctuation and spaces after it.
func cutPrefix(s string, prefixes ...string) (string, bool) {
	for _, p := range prefixes {
		if len(s) < len(p) || !strings.EqualFold(s[:len(p)], p) {
			continue
		}
		if len(s) > len(p) && isWordByte(s[len(p)]) && isWordByte(p[len(p)-1]) {
			continue
		}
		return strings.TrimLeft(s[len(p):], " ,"), true
	}
	return s, false
}

// cutSuffix removes the first of suffixes that ends s as whole words,
// ignoring case, and the punctuation and spaces before it.
func cutSuffix(s string, suffixes ...string) (string, bool) {
	for _, x := range suffixes {
		i := len(s) - len(x)
		if i < 0 || !strings.EqualFold(s[i:], x) {
			continue
		}
		if i > 0 && isWordByte(s[i-1]) && isWordByte(x[0]) {
			continue
		}
		return strings.TrimRight(s[:i], " ,"), true
	}
	return s, false
}

// isWordByte reports whether b is part of a word: an ASCII letter, digit or
// apostrophe, or a byte of a non-ASCII character.
func isWordByte(b byte) bool {
	return b >= 0x80 || b == '\'' || b == '-' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
}

func isOneOf(s string, list []string) bool {
	for _, w := range list {
		if strings.EqualFold(s, w) {
			return true
		}
	}
	return false
}

// containsAny reports whether lower holds one of words as whole words.
func containsAny(lower string, words []string) bool {
	for _, w := range words {
		for i := 0; ; {
			j := strings.Index(lower[i:], w)
			if j < 0 {
				break
			}
			j += i
			end := j + len(w)
			if (j == 0 || !isWordByte(lower[j-1])) && (end == len(lower) || !isWordByte(lower[end]) || isPluralOf(lower, end)) {
				return true
			}
			i = j + 1
		}
	}
	return false
}

// isPluralOf reports whether the word ending at end continues with "s",
// "ed" or "ing" and then ends, so "task" finds "tasks" and "finish"
// finds "finished".
func isPluralOf(lower string, end int) bool {
	for _, tail := range []string{"s", "es", "ed", "d", "ing"} {
		e := end + len(tail)
		if strings.HasPrefix(lower[end:], tail) && (e == len(lower) || !isWordByte(lower[e])) {
			return true
		}
	}
	return false
}

func notWordRune(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }

// tokens are the words of s that matter for matching: lower-cased, without
// stopwords, a plural "s" dropped, each once.
func tokens(s string) []string {
	var out []string
	seen := map[string]bool{}
	for _, w := range strings.FieldsFunc(strings.ToLower(s), notWordRune) {
		if stopwords[w] {
			continue
		}
		if len(w) > 3 && strings.HasSuffix(w, "s") && !strings.HasSuffix(w, "ss") {
			w = w[:len(w)-1]
		}
		if !seen[w] {
			seen[w] = true
			out = append(out, w)
		}
	}
	return out
}
