package agent

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// ErrRoundsExceeded is wrapped by Run's error when the model still asks for
// tools after the round cap (see WithMaxRounds).
var ErrRoundsExceeded = errors.New("agent: too many tool rounds")

// DefaultMaxRounds is the round cap of an Agent made without WithMaxRounds.
const DefaultMaxRounds = 8

// DefaultSystemPrompt is the system message of an Agent made without
// WithSystemPrompt: prompt.txt, which tells a real model how to behave and
// how to use the five tools. The offline provider ignores it.
//
//go:embed prompt.txt
var DefaultSystemPrompt string

// Agent runs the assistant's loop over one Provider. It holds no per-run
// state and is safe for concurrent use.
type Agent struct {
	provider  Provider
	maxRounds int
	system    string
}

// Option configures an Agent.
type Option func(*Agent)

// WithMaxRounds caps the tool rounds of a run at n (values below 1 mean 1):
// the model may answer with tool calls n times, and its turn after the n-th
// round must be text, or Run fails with ErrRoundsExceeded. Recorded rounds
// count. The default is DefaultMaxRounds.
func WithMaxRounds(n int) Option {
	return func(a *Agent) { a.maxRounds = max(n, 1) }
}

// WithSystemPrompt sets the system message put before the history; "" sends
// none. The default is DefaultSystemPrompt.
func WithSystemPrompt(s string) Option {
	return func(a *Agent) { a.system = s }
}

// New returns an Agent asking p.
func New(p Provider, opts ...Option) *Agent {
	a := &Agent{provider: p, maxRounds: DefaultMaxRounds, system: DefaultSystemPrompt}
	for _, o := range opts {
		o(a)
	}
	return a
}

// Model names the model the agent asks (its provider's).
func (a *Agent) Model() string { return a.provider.Model() }

// Run answers in.History's last message. It replays in.Ledger's rounds
// (see the package comment), then asks the model for the next round until
// a turn has no tool calls: that turn's text is Result.Text. Each call is
// announced to sink, run through tools with its round and index, and its
// result announced and fed back to the model. sink may be nil.
//
// Errors: a provider or tool error is returned wrapped (so errors.Is finds
// ErrTransient); the cap gives an error wrapping ErrRoundsExceeded; when
// ctx ends Run returns ctx.Err() itself. With an error, the Result holds
// the calls made so far (what the ledger already has), the usage so far and
// the model name, and no text.
func (a *Agent) Run(ctx context.Context, in Input, tools ToolRunner, sink Sink) (Result, error) {
	if sink == nil {
		sink = discard{}
	}
	res := Result{Model: a.provider.Model()}
	msgs := make([]Message, 0, len(in.History)+1+3*len(in.Ledger))
	if a.system != "" {
		msgs = append(msgs, Message{Role: RoleSystem, Content: a.system})
	}
	msgs = append(msgs, in.History...)

	// Replay: the model sees the recorded rounds as if it had just made
	// them; the client, told run.restarted, sees them announced again.
	for _, r := range in.Ledger {
		calls := make([]Call, len(r.Calls))
		for i, c := range r.Calls {
			calls[i] = c.Call
		}
		msgs = append(msgs, Message{Role: RoleAssistant, Content: r.Text, Calls: calls})
		if r.Text != "" {
			sink.Delta(r.Text)
		}
		for _, c := range r.Calls {
			sink.ToolCall(c.Call)
			sink.ToolResult(c.Call, c.Result)
			msgs = append(msgs, toolMessage(c.Call, c.Result))
			res.Calls = append(res.Calls, c)
		}
	}

	specs := ToolSpecs()
	for round := len(in.Ledger); ; round++ {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		turn, err := a.provider.Complete(ctx, Request{Messages: msgs, Tools: specs}, sink.Delta)
		res.Usage = res.Usage.Add(turn.Usage)
		if err != nil {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			return res, fmt.Errorf("agent: model round %d: %w", round, err)
		}
		if len(turn.Calls) == 0 {
			res.Text = turn.Text
			return res, nil
		}
		if round >= a.maxRounds {
			return res, fmt.Errorf("agent: round %d asks for %d tool calls after %d rounds: %w",
				round, len(turn.Calls), a.maxRounds, ErrRoundsExceeded)
		}
		calls := make([]Call, len(turn.Calls))
		for i, c := range turn.Calls {
			if c.ID == "" {
				// The id links a tool message to its call; a model that
				// gave none still needs one that is unique in the run.
				c.ID = "call_r" + strconv.Itoa(round) + "_" + strconv.Itoa(i)
			}
			c.Arguments = jsonArguments(c.Arguments)
			calls[i] = c
		}
		msgs = append(msgs, Message{Role: RoleAssistant, Content: turn.Text, Calls: calls})
		for i, c := range calls {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			sink.ToolCall(c)
			result, err := tools.RunTool(ctx, round, i, turn.Text, c)
			if err != nil {
				if ctx.Err() != nil {
					return res, ctx.Err()
				}
				return res, fmt.Errorf("agent: round %d tool %q: %w", round, c.Name, err)
			}
			sink.ToolResult(c, result)
			msgs = append(msgs, toolMessage(c, result))
			res.Calls = append(res.Calls, RecordedCall{Call: c, Result: result})
		}
	}
}

// jsonArguments returns a call's arguments as valid JSON, since the ledger
// and the assistant message store them as JSON: empty arguments become {},
// text that is not JSON becomes a JSON string holding it, which the tools
// refuse (INVALID_ARGUMENTS) as they would the text itself.
func jsonArguments(args json.RawMessage) json.RawMessage {
	if len(bytes.TrimSpace(args)) == 0 {
		return json.RawMessage(`{}`)
	}
	if json.Valid(args) {
		return args
	}
	b, err := json.Marshal(string(args))
	if err != nil {
		panic("agent: encode arguments: " + err.Error()) // cannot happen: a string
	}
	return b
}

// toolMessage is the message that gives the model call's result.
func toolMessage(c Call, result json.RawMessage) Message {
	return Message{Role: RoleTool, Content: string(result), CallID: c.ID, Name: c.Name}
}

// discard is the Sink of a run nobody watches.
type discard struct{}

func (discard) Delta(string)                     {}
func (discard) ToolCall(Call)                    {}
func (discard) ToolResult(Call, json.RawMessage) {}
