// taskchat console: sign in with a credential, chat with the assistant,
// watch its answers stream in, and manage the tasks it changes — all through
// the public API described in docs/api.md, like any other front end.
//
// Plain JavaScript, no framework, no build step. Read it top to bottom:
//   1. helpers       el() builds the page with textContent only: no text
//                    from the server is ever parsed as HTML
//   2. credential    kept in sessionStorage (this tab only); a #token=…
//                    fragment is moved there and cleared from the address
//   3. api()         fetch with the Authorization header; problem+json errors
//   4. conversations the list on the left: open, rename, delete, new
//   5. messages      what the chat pane shows, built from REST and events
//   6. events        the conversation's event stream, read with fetch and
//                    resumed with Last-Event-ID after a cut or a reload
//   7. sending       the message box, the Stop button
//   8. tasks         the pane on the right: filter, search, add, toggle,
//                    edit, delete; refreshed when a tool changes a task
//   9. start
'use strict';

// ---------------------------------------------------------------- 1. helpers

const $ = (id) => document.getElementById(id);

// el builds an element. props: "text" sets textContent, "class" the class,
// "on<event>" adds a listener, true/false sets or leaves out an attribute,
// anything else is set as an attribute. Children are elements or strings
// (strings become text nodes).
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'text') node.textContent = value;
    else if (key === 'class') node.className = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, '');
    else if (value !== false && value != null) node.setAttribute(key, String(value));
  }
  node.append(...children.filter((c) => c != null));
  return node;
}

// notice shows a message for people at the top of the page; '' hides it.
function notice(text) {
  $('notice').textContent = text;
  $('notice').hidden = !text;
}

// Notices about the connection, cleared once it is back.
const OFFLINE = 'The server cannot be reached. Is chatd running?';
const RECONNECTING = 'The connection to the server was lost: reconnecting…';

// wait resolves after ms, or at once when signal aborts.
function wait(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

// randomKey makes an Idempotency-Key, so that a send repeated after a
// network failure is stored once.
function randomKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

// ------------------------------------------------------------- 2. credential

const TOKEN_KEY = 'taskchat.token';
const CONVERSATION_KEY = 'taskchat.conversation'; // the open conversation
const STREAM_KEY = 'taskchat.stream.'; // + conversation id: see saveStreamState

const state = {
  token: null, // the credential
  userId: null, // whose it is (GET /api/me)
  conversations: [], // as last listed, newest first
};

// takeTokenFromFragment moves a credential given as #token=… (the URL chatd
// logs in development mode) to sessionStorage and clears the fragment, so
// it is neither bookmarked nor left in the address bar.
function takeTokenFromFragment() {
  const match = location.hash.match(/^#token=(.+)$/);
  if (location.hash) history.replaceState(null, '', location.pathname + location.search);
  if (match) {
    sessionStorage.clear(); // a new credential: forget the previous user's state
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
  }
}

// signIn checks token (GET /api/me) and opens the console. typed: the
// person just pasted it, rather than it coming from this tab's storage.
async function signIn(token, typed = false) {
  state.token = token;
  let me;
  try {
    me = await api('GET', '/api/me');
  } catch (err) {
    $('sign-in').hidden = false;
    if (err.status === 401 && typed) notice('The server does not accept this credential: check it, or get a new one (make token).');
    else report(err);
    return;
  }
  state.userId = me.user_id;
  sessionStorage.setItem(TOKEN_KEY, token);
  notice('');
  await showApp();
}

// signOut forgets the credential and everything of its user, and shows
// the sign-in form with message (why), if any.
function signOut(message) {
  closeConversation();
  sessionStorage.clear();
  state.token = state.userId = null;
  state.conversations = [];
  $('conversation-list').replaceChildren();
  $('task-list').replaceChildren();
  $('messages').replaceChildren();
  $('app').hidden = true;
  $('sign-out').hidden = true;
  $('whoami').textContent = '';
  $('sign-in').hidden = false;
  $('credential').value = '';
  $('credential').focus();
  notice(message || '');
}

// ------------------------------------------------------------------ 3. api()

class ApiError extends Error {
  constructor(status, code, detail) {
    super(detail);
    this.status = status; // 0: the server could not be reached
    this.code = code;
  }
}

// api calls the API with the credential and returns the decoded answer
// (null for 204). A problem answer throws an ApiError; 401 also signs out.
async function api(method, path, { body, headers = {} } = {}) {
  const init = { method, headers: { Authorization: 'Bearer ' + state.token, ...headers } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'NETWORK', 'the server cannot be reached');
  }
  if (resp.status === 204) return null;
  const data = await resp.json().catch(() => null);
  if (resp.ok) return data;
  if (resp.status === 401) expired();
  throw new ApiError(resp.status, data?.code || 'HTTP_' + resp.status, data?.detail || resp.statusText);
}

function expired() {
  signOut('The credential is not valid or has expired: sign in again.');
}

// userPath is p under the signed-in user's /api/{user_id}.
function userPath(p) {
  return '/api/' + encodeURIComponent(state.userId) + p;
}

// report shows what went wrong, in words.
function report(err) {
  if (!(err instanceof ApiError)) {
    console.error(err);
    notice('Something went wrong: ' + err.message);
  } else if (err.status === 401) {
    // expired() already took the user back to the sign-in form.
  } else if (err.status === 429) {
    notice('Too many messages at once: wait for the answers to finish, then send again.');
  } else if (err.status === 0) {
    notice(OFFLINE);
  } else if (err.status === 503) {
    notice('The service is not available right now; try again in a few seconds.');
  } else {
    notice(`Something went wrong: ${err.message} (${err.code}).`);
  }
}

// ---------------------------------------------------------- 4. conversations

async function loadConversations() {
  const page = await api('GET', userPath('/conversations?limit=50'));
  state.conversations = page.data;
  renderConversations();
}

function renderConversations() {
  const list = $('conversation-list');
  list.replaceChildren(...state.conversations.map(conversationItem));
  if (state.conversations.length === 0) list.append(el('li', { class: 'empty', text: 'No conversations yet.' }));
  const open = state.conversations.find((c) => c.id === view.id);
  $('chat-title').textContent = open ? open.title : 'New conversation';
}

function conversationItem(c) {
  const item = el('li', { 'data-conversation-id': c.id });
  item.append(
    el('button', {
      type: 'button', class: 'select', title: c.last_message_preview || '',
      'aria-current': c.id === view.id ? 'true' : 'false',
      onclick: () => openConversation(c.id),
    }, c.title),
    el('button', {
      type: 'button', 'aria-label': `Rename “${c.title}”`,
      onclick: () => inlineEdit(item, c.title, 'New title', async (title) => {
        await api('PATCH', userPath('/conversations/' + c.id), { body: { title } });
        await loadConversations();
      }),
    }, 'Rename'),
    el('button', {
      type: 'button', 'aria-label': `Delete “${c.title}”`,
      onclick: () => deleteConversation(c),
    }, 'Delete'),
  );
  return item;
}

async function deleteConversation(c) {
  if (!confirm(`Delete “${c.title}” and all its messages?`)) return;
  try {
    await api('DELETE', userPath('/conversations/' + c.id));
    if (c.id === view.id) newConversation();
    await loadConversations();
  } catch (err) {
    report(err);
  }
}

// inlineEdit replaces item's content with a one-line form holding value;
// Enter saves through save(newValue), Escape puts the item back.
function inlineEdit(item, value, label, save) {
  const before = [...item.childNodes];
  const input = el('input', { value, 'aria-label': label, maxlength: 200, required: true });
  const cancel = () => { item.replaceChildren(...before); before[0].focus?.(); };
  input.addEventListener('keydown', (e) => { if (e.key === 'Escape') cancel(); });
  const form = el('form', {
    onsubmit: async (e) => {
      e.preventDefault();
      try {
        await save(input.value.trim());
      } catch (err) {
        report(err);
      }
    },
  }, input, el('button', { type: 'submit' }, 'Save'), el('button', { type: 'button', onclick: cancel }, 'Cancel'));
  item.replaceChildren(form);
  input.focus();
  input.select();
}

// --------------------------------------------------------------- 5. messages

// view is the open conversation as the chat pane shows it.
let view = freshView(null);

function freshView(id) {
  return {
    id, // the conversation; null for a new one, not yet sent
    stream: null, // its event stream (follow)
    cursor: null, // the id of the last event applied
    bubbles: new Map(), // message id -> bubble (see newBubble)
    runs: new Map(), // run id -> { userMessageId, assistantMessageId, done }
    partial: null, // the answer being streamed: { runId, messageId, text, tools }
    activeRun: null, // the unfinished run the Stop button cancels
  };
}

function runOf(runId) {
  if (!view.runs.has(runId)) view.runs.set(runId, { userMessageId: null, assistantMessageId: null, done: false });
  return view.runs.get(runId);
}

// newBubble makes a message's element: who speaks, its tool calls, its
// text and a status line ("Thinking…", "Stopped.").
function newBubble(role) {
  const b = {
    role,
    final: false, // true once it shows the message as stored
    text: '',
    tools: [], // { id, name, arguments, result }
    li: el('li', { class: 'message ' + role }),
    toolList: el('ul', { class: 'tools', hidden: true, 'aria-label': 'Tool calls' }),
    textEl: el('div', { class: 'text' }),
    statusEl: el('div', { class: 'status', hidden: true }),
  };
  b.li.append(el('div', { class: 'who', text: role === 'user' ? 'You' : 'Assistant' }), b.toolList, b.textEl, b.statusEl);
  return b;
}

// bubbleFor returns the bubble of message id, appending a new one.
function bubbleFor(id, role) {
  let b = view.bubbles.get(id);
  if (!b) {
    b = newBubble(role);
    b.li.dataset.messageId = id;
    view.bubbles.set(id, b);
    $('messages').querySelector('.empty')?.remove();
    $('messages').append(b.li);
  }
  return b;
}

function setText(b, text) {
  b.text = text;
  b.textEl.textContent = text;
  b.li.scrollIntoView({ block: 'end' });
}

function setStatus(b, text, failed = false) {
  b.statusEl.textContent = text;
  b.statusEl.hidden = !text;
  b.statusEl.classList.toggle('failed', failed);
}

// showStored shows a message as stored (a Message of the API), replacing
// whatever was streamed for it.
function showStored(m) {
  const b = bubbleFor(m.id, m.role);
  b.final = true;
  b.li.removeAttribute('aria-busy');
  b.tools = m.tool_calls || [];
  renderTools(b);
  setText(b, m.content);
  setStatus(b, '');
  if (m.run_id) {
    const run = runOf(m.run_id);
    if (m.role === 'user') run.userMessageId = m.id;
    else run.assistantMessageId = m.id;
  }
}

// The verb of each task tool's result line; list_tasks has its own.
const TOOL_VERBS = { add_task: 'Added', complete_task: 'Completed', delete_task: 'Deleted', update_task: 'Updated' };

// toolLine is a tool call in a few words: "✓ Added 'Buy milk'".
function toolLine(call) {
  const r = call.result;
  if (r == null) return { text: '… ' + call.name, failed: false };
  if (r.status === 'error') return { text: `✗ ${call.name}: ${r.message}`, failed: true };
  if (call.name === 'list_tasks') {
    const n = Array.isArray(r) ? r.length : 0;
    return { text: `✓ Listed ${n} ${n === 1 ? 'task' : 'tasks'}`, failed: false };
  }
  return { text: `✓ ${TOOL_VERBS[call.name] || call.name} '${r.title}'`, failed: false };
}

function renderTools(b) {
  b.toolList.replaceChildren(...b.tools.map((call) => {
    const line = toolLine(call);
    return el('li', { class: line.failed ? 'failed' : '', text: line.text });
  }));
  b.toolList.hidden = b.tools.length === 0;
}

// openConversation shows conversation id and follows its events. The
// stream opens first, then the messages are loaded; events that arrive
// meanwhile wait in a queue, so nothing between the two is missed. cursor
// (or the one this tab saved before a reload) resumes the stream where it
// was, and the answer it was streaming is put back on screen.
async function openConversation(id, cursor = null) {
  closeConversation();
  view = freshView(id);
  sessionStorage.setItem(CONVERSATION_KEY, id);
  $('messages').replaceChildren();
  renderConversations();

  const saved = cursor == null ? loadStreamState(id) : null;
  const thisView = view;
  const queue = [];
  let loaded = false;
  view.stream = follow(id, cursor ?? saved?.cursor ?? null, (ev) => {
    if (view !== thisView) return;
    if (loaded) applyEvent(ev);
    else queue.push(ev);
  });
  await view.stream.opened;
  try {
    const page = await api('GET', userPath(`/conversations/${id}/messages?order=desc&limit=100`));
    if (view !== thisView) return;
    page.data.reverse().forEach(showStored);
    if (saved?.partial && !view.bubbles.has(saved.partial.messageId)) restorePartial(saved.partial);
    else await findUnfinishedRun(page.data);
  } catch (err) {
    if (err.status === 404) return conversationGone(id);
    report(err);
  }
  if (view !== thisView) return;
  loaded = true;
  queue.splice(0).forEach(applyEvent);
  if (view.bubbles.size === 0) $('messages').append(el('li', { class: 'empty', text: 'No messages yet.' }));
}

// findUnfinishedRun looks at the run of the last user message that has no
// answer: still going, it gets the Stop button; failed, it says why.
async function findUnfinishedRun(messages) {
  const last = messages.filter((m) => m.role === 'user').pop();
  if (!last || runOf(last.run_id).assistantMessageId) return;
  const run = await api('GET', userPath('/runs/' + last.run_id));
  if (run.status === 'queued' || run.status === 'running') setActiveRun(run.id);
  else if (run.error) setStatus(bubbleFor(last.id, 'user'), 'No answer: ' + run.error.message, run.status === 'failed');
}

function closeConversation() {
  view.stream?.stop();
  setActiveRun(null);
}

function newConversation() {
  closeConversation();
  view = freshView(null);
  sessionStorage.removeItem(CONVERSATION_KEY);
  $('messages').replaceChildren(el('li', { class: 'empty', text: 'Send a message to start a conversation.' }));
  renderConversations();
  $('message-input').focus();
}

// conversationGone: the conversation was deleted (in another tab, say).
function conversationGone(id) {
  sessionStorage.removeItem(STREAM_KEY + id);
  if (view.id === id) newConversation();
  loadConversations().catch(report);
}

// ----------------------------------------------------------------- 6. events

// follow reads conversation id's event stream with fetch, so that the
// credential travels in the Authorization header (an EventSource could
// only put it in the URL). When the stream breaks it reconnects, with a
// growing delay, and sends the last event id it got as Last-Event-ID: the
// server then sends exactly the events that were missed. opened settles
// once the first attempt has an answer.
function follow(id, cursor, onEvent) {
  const controller = new AbortController();
  let lastId = cursor;
  let markOpened;
  const opened = new Promise((resolve) => { markOpened = resolve; });

  async function run() {
    let delay = 500;
    while (!controller.signal.aborted) {
      try {
        const headers = { Authorization: 'Bearer ' + state.token, Accept: 'text/event-stream' };
        if (lastId != null) headers['Last-Event-ID'] = String(lastId);
        const resp = await fetch(userPath(`/conversations/${id}/events`), { headers, signal: controller.signal, cache: 'no-store' });
        markOpened();
        if (resp.status === 401) return expired();
        if (resp.status === 404) return conversationGone(id);
        if (resp.ok) {
          delay = 500;
          if ([OFFLINE, RECONNECTING].includes($('notice').textContent)) notice('');
          await readEvents(resp.body, (ev) => {
            if (ev.id != null) lastId = ev.id;
            onEvent(ev);
          });
        }
      } catch {
        // A cut connection, or stop().
        if (!controller.signal.aborted) notice(RECONNECTING);
      }
      markOpened();
      await wait(delay, controller.signal);
      delay = Math.min(delay * 2, 10000);
    }
  }
  run();
  return { opened, stop: () => controller.abort() };
}

// readEvents parses a Server-Sent Events body into { id, type, data }
// and calls onEvent for each, until the body ends. Comment lines (": ping")
// are skipped.
async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const ev = { id: null, type: 'message', data: '' };
      for (const line of frame.split('\n')) {
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'id') ev.id = Number(text);
        else if (field === 'event') ev.type = text;
        else if (field === 'data') ev.data += text;
      }
      if (ev.data) onEvent({ ...ev, data: JSON.parse(ev.data) });
    }
  }
}

// applyEvent changes the chat pane for one run event (the table of events
// is in docs/api.md, "Run events").
function applyEvent(ev) {
  const d = ev.data;
  switch (ev.type) {
    case 'run.queued':
      runOf(d.run_id).userMessageId = d.message_id;
      setActiveRun(d.run_id);
      break;
    case 'run.started': {
      runOf(d.run_id).assistantMessageId = d.message_id;
      setActiveRun(d.run_id);
      const b = bubbleFor(d.message_id, 'assistant');
      if (!b.final) {
        b.li.setAttribute('aria-busy', 'true'); // read out once complete
        setStatus(b, b.text ? '' : 'Thinking…');
        view.partial = { runId: d.run_id, messageId: d.message_id, text: b.text, tools: b.tools };
      }
      break;
    }
    case 'message.delta': {
      const b = streamingBubble(d.run_id, d.message_id);
      if (b) {
        setText(b, b.text + d.delta);
        setStatus(b, '');
        view.partial.text = b.text;
      }
      break;
    }
    case 'tool.call':
    case 'tool.result': {
      const b = streamingBubble(d.run_id);
      if (b) {
        let call = b.tools.find((c) => c.id === d.call_id);
        if (!call) b.tools.push(call = { id: d.call_id, name: d.name, arguments: d.arguments, result: null });
        if (ev.type === 'tool.result') call.result = d.result;
        renderTools(b);
        view.partial.tools = b.tools;
      }
      if (ev.type === 'tool.result') loadTasks();
      break;
    }
    case 'run.restarted': {
      // A retry announces the text and tool calls again: start over.
      const b = streamingBubble(d.run_id);
      if (b) {
        b.tools = [];
        renderTools(b);
        setText(b, '');
        view.partial.text = '';
        view.partial.tools = b.tools;
      }
      break;
    }
    case 'message.completed':
      showStored(d.message);
      break;
    case 'run.completed':
      finishRun(d.run_id, '');
      break;
    case 'run.failed':
      finishRun(d.run_id, 'The assistant could not answer: ' + d.error.message, true);
      break;
    case 'run.cancelled':
      finishRun(d.run_id, 'Stopped.');
      break;
    case 'reset':
      // The cursor is too old (or unknown): start again from the record.
      sessionStorage.removeItem(STREAM_KEY + view.id);
      openConversation(view.id, ev.id);
      return;
  }
  view.cursor = ev.id;
  saveStreamState();
}

// streamingBubble is the bubble a run's answer streams into, or null when
// that answer is already shown as stored (a replayed event).
function streamingBubble(runId, messageId) {
  const id = messageId || runOf(runId).assistantMessageId;
  if (!id) return null;
  const b = bubbleFor(id, 'assistant');
  if (b.final) return null;
  if (view.partial?.messageId !== id) view.partial = { runId, messageId: id, text: b.text, tools: b.tools };
  return b;
}

function finishRun(runId, status, failed = false) {
  const run = runOf(runId);
  run.done = true;
  if (view.activeRun === runId) setActiveRun(null);
  view.partial = null;
  const answer = run.assistantMessageId && view.bubbles.get(run.assistantMessageId);
  answer?.li.removeAttribute('aria-busy');
  if (answer && (answer.final || answer.text)) setStatus(answer, status, failed);
  else if (status && run.userMessageId && view.bubbles.has(run.userMessageId)) {
    // No answer was written: say why under the question.
    answer?.li.remove();
    view.bubbles.delete(run.assistantMessageId);
    setStatus(view.bubbles.get(run.userMessageId), status, failed);
  }
  loadConversations().catch(report); // new order, new preview
}

// saveStreamState keeps, for this tab, the cursor of the last event
// applied and the answer streamed so far: after a reload the stream
// resumes right after that event and the answer goes on from that text,
// with nothing missed and nothing twice.
function saveStreamState() {
  if (!view.id) return;
  sessionStorage.setItem(STREAM_KEY + view.id, JSON.stringify({ cursor: view.cursor, partial: view.partial }));
}

function loadStreamState(id) {
  try {
    return JSON.parse(sessionStorage.getItem(STREAM_KEY + id));
  } catch {
    return null;
  }
}

function restorePartial(p) {
  runOf(p.runId).assistantMessageId = p.messageId;
  const b = bubbleFor(p.messageId, 'assistant');
  b.tools = p.tools || [];
  renderTools(b);
  setText(b, p.text || '');
  view.partial = p;
  setActiveRun(p.runId);
}

// ---------------------------------------------------------------- 7. sending

function setActiveRun(runId) {
  view.activeRun = runId;
  $('stop').hidden = !runId;
}

// send posts the message (answered at once with the run's ids; the answer
// itself comes as events). The message is shown before it is sent, so it
// is above its answer however fast that comes.
async function send(text) {
  const mine = newBubble('user');
  mine.final = true;
  $('messages').querySelector('.empty')?.remove();
  $('messages').append(mine.li);
  setText(mine, text);
  const body = { message: text };
  if (view.id) body.conversation_id = view.id;
  let accepted;
  try {
    accepted = await api('POST', userPath('/chat'), {
      body, headers: { Prefer: 'respond-async', 'Idempotency-Key': randomKey() },
    });
  } catch (err) {
    mine.li.remove();
    if (!$('message-input').value) $('message-input').value = text;
    report(err);
    return;
  }
  notice('');
  if (!view.id) {
    // A new conversation: follow it from just before this run's first event.
    const after = new URL(accepted.events_url, location.href).searchParams.get('after');
    await loadConversations().catch(report);
    await openConversation(accepted.conversation_id, Number(after));
    return;
  }
  mine.li.dataset.messageId = accepted.message_id;
  view.bubbles.set(accepted.message_id, mine);
  runOf(accepted.run_id).userMessageId = accepted.message_id;
  if (!runOf(accepted.run_id).done) setActiveRun(accepted.run_id);
}

async function stop() {
  const runId = view.activeRun;
  if (!runId) return;
  try {
    await api('POST', userPath(`/runs/${runId}/cancel`));
  } catch (err) {
    if (err.code !== 'RUN_FINISHED') report(err);
  }
}

// ------------------------------------------------------------------ 8. tasks

let tasksLoad = 0; // counts loads, so that only the latest one renders

async function loadTasks() {
  const query = new URLSearchParams({ status: $('task-status').value, sort: 'created', order: 'desc', limit: '200' });
  const search = $('task-search').value.trim();
  if (search) query.set('q', search);
  const mine = ++tasksLoad;
  let page;
  try {
    page = await api('GET', userPath('/tasks?' + query));
  } catch (err) {
    report(err);
    return;
  }
  if (mine !== tasksLoad) return;
  const list = $('task-list');
  list.replaceChildren(...page.data.map(taskItem));
  if (page.data.length === 0) list.append(el('li', { class: 'empty', text: search ? 'No task matches.' : 'No tasks.' }));
}

function taskItem(t) {
  const item = el('li', { class: t.completed ? 'done' : '', 'data-task-id': t.id });
  const box = el('input', { type: 'checkbox', id: 'task-' + t.id });
  box.checked = t.completed;
  box.addEventListener('change', () => taskAction('PATCH', `/tasks/${t.id}/complete`));
  item.append(
    box,
    el('label', { for: 'task-' + t.id, class: 'title', title: t.description || '' }, t.title),
    el('button', {
      type: 'button', 'aria-label': `Edit “${t.title}”`,
      onclick: () => inlineEdit(item, t.title, 'New title', (title) => taskAction('PUT', `/tasks/${t.id}`, { title })),
    }, 'Edit'),
    el('button', {
      type: 'button', 'aria-label': `Delete “${t.title}”`,
      onclick: () => taskAction('DELETE', `/tasks/${t.id}`),
    }, 'Delete'),
  );
  return item;
}

// taskAction changes a task over REST, then shows the list again.
async function taskAction(method, path, body) {
  try {
    await api(method, userPath(path), { body });
    notice('');
  } catch (err) {
    report(err);
  }
  await loadTasks();
}

// ------------------------------------------------------------------ 9. start

async function showApp() {
  $('sign-in').hidden = true;
  $('app').hidden = false;
  $('sign-out').hidden = false;
  $('whoami').textContent = 'Signed in as ' + state.userId;
  await Promise.all([loadConversations().catch(report), loadTasks()]);
  const open = sessionStorage.getItem(CONVERSATION_KEY);
  if (open && state.conversations.some((c) => c.id === open)) await openConversation(open);
  else newConversation();
  $('message-input').focus();
}

function wire() {
  $('sign-in-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const token = $('credential').value.trim();
    if (token) signIn(token, true);
  });
  $('sign-out').addEventListener('click', () => signOut(''));
  $('new-conversation').addEventListener('click', newConversation);

  const input = $('message-input');
  $('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = '';
    send(text);
  });
  // Enter sends; Shift+Enter (or Enter while composing a character) is a new line.
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $('composer').requestSubmit();
    }
  });
  $('stop').addEventListener('click', stop);

  $('task-status').addEventListener('change', loadTasks);
  let searchTimer;
  $('task-search').addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(loadTasks, 250);
  });
  $('task-add').addEventListener('submit', async (e) => {
    e.preventDefault();
    const title = $('task-title').value.trim();
    if (!title) return;
    await taskAction('POST', '/tasks', { title });
    $('task-title').value = '';
  });
}

wire();
takeTokenFromFragment();
const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) signIn(saved);
else signOut('');
