// chat.js — the dashboard's lobby chat: join/leave, the recent history on joining, who is
// online, live messages and the ones recovered after the network dropped (the client asks
// the server for them on reconnect; here every message is shown once, in seq order).
//
// Elements (index.html): #chat-group, #chat-state, #chat-join, #chat-leave, #chat-online
// (shown while joined) with #chat-members (one li[data-user][data-devices] per online member),
// #chat-messages (an ol: li.chat-entry[data-kind=message|notice], messages with data-seq,
// data-from, data-recovered; the list says data-history=loading|loaded|failed), #chat-form,
// #chat-input, #chat-send.

/** Messages loaded from the history on joining. */
export const HISTORY_ON_JOIN = 50;
/** At most this many entries are kept in the list (the oldest go first). */
export const CHAT_LIMIT = 200;

const pad = (n) => String(n).padStart(2, '0');

/** "14:02:07". */
function timeOfDay(ms) {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** The text of a message's `data`: a string, `{text}`, or its JSON. */
export function messageText(data) {
  if (typeof data === 'string') return data;
  if (data && typeof data.text === 'string') return data.text;
  return JSON.stringify(data);
}

/** Clears the chat's elements (signed out). */
export function resetChatView(doc = document) {
  const $ = (id) => doc.getElementById(id);
  $('chat-messages').replaceChildren();
  delete $('chat-messages').dataset.history;
  $('chat-members').replaceChildren();
  $('chat-input').value = '';
  $('chat-group').textContent = '';
  showState(doc, 'left');
}

function showState(doc, state) {
  const $ = (id) => doc.getElementById(id);
  const node = $('chat-state');
  node.textContent = state;
  node.dataset.state = state;
  const joined = state === 'joined';
  $('chat-join').disabled = joined;
  $('chat-leave').disabled = !joined;
  $('chat-input').disabled = !joined;
  $('chat-send').disabled = !joined;
  $('chat-input').placeholder = joined ? 'Write a message' : 'Join to send messages';
  const online = $('chat-online');
  if (online) online.hidden = !joined;
  if (!joined) $('chat-members').replaceChildren();
}

/**
 * One signed-in user's lobby chat over a PresenceClient.
 *
 * - Joining (here or on another device of the user: the `joined` event) shows the last
 *   `HISTORY_ON_JOIN` messages (`history(group, {limit})`) and who is online (`presence`);
 *   every later `joined` (the client re-joins on each reconnect) asks `presence` again, since
 *   `member.online`/`member.offline` were missed while disconnected.
 * - Messages are shown once per `seq`, in seq order, whether live, from the history on
 *   joining, or recovered by the client after a reconnect (`recovered: true`).
 * - Who is online: the `presence` reply, then `member.online` / `member.joined` add a user,
 *   `member.offline` / `member.left` remove one.
 */
export class LobbyChat {
  #client;
  #group;
  #self;
  #userName;
  #log;
  #doc;
  #abort = new AbortController();
  #state = 'left';
  /** user -> devices */
  #online = new Map();
  /** member events that came while a presence request was in flight: applied after it */
  #presenceBacklog = null;
  /** seqs shown (this sign-in) */
  #shown = new Set();
  /** the "You joined" notice of the current join: the history loaded on joining goes above it */
  #joinNotice = null;

  /**
   * @param {object} options
   * @param {import('./presence-client.js').PresenceClient} options.client
   * @param {string} options.group   e.g. `chat:trondelag-lobby`
   * @param {string} [options.self]  the signed-in user's id (shown as "you")
   * @param {(id: string) => string} [options.userName] display name of a user id
   * @param {(kind: string, text: string) => void} [options.log] the dashboard's event log
   * @param {Document} [options.doc]
   */
  constructor({ client, group, self = null, userName = (id) => id, log = () => {}, doc = document }) {
    this.#client = client;
    this.#group = group;
    this.#self = self;
    this.#userName = userName;
    this.#log = log;
    this.#doc = doc;
  }

  /** @returns {'joined'|'left'} */
  get state() {
    return this.#state;
  }

  get group() {
    return this.#group;
  }

  /** Shows the (left) chat and starts following the client and the controls. */
  start() {
    const $ = (id) => this.#doc.getElementById(id);
    $('chat-group').textContent = this.#group;
    this.#setState('left');
    const signal = this.#abort.signal;
    const on = (type, handler) =>
      this.#client.addEventListener(
        type,
        (event) => {
          if (event.detail?.group === this.#group) handler(event.detail);
        },
        { signal },
      );
    on('joined', () => this.#onJoined());
    on('left', () => this.#onLeft());
    on('message', (detail) => this.#onMessage(detail));
    on('recovered', (detail) => this.#onRecovered(detail));
    on('member.joined', ({ user }) => this.#memberEvent(user, true, 'joined'));
    on('member.left', ({ user }) => this.#memberEvent(user, false, 'left'));
    on('member.online', ({ user }) => this.#memberEvent(user, true, null));
    on('member.offline', ({ user }) => this.#memberEvent(user, false, null));

    $('chat-join').addEventListener('click', () => this.join(), { signal });
    $('chat-leave').addEventListener('click', () => this.leave(), { signal });
    $('chat-form').addEventListener(
      'submit',
      (event) => {
        event.preventDefault();
        this.sendInput();
      },
      { signal },
    );
    return this;
  }

  /** Stops following the client and the controls (sign-out). */
  stop() {
    this.#abort.abort();
  }

  join() {
    this.#client.join(this.#group).catch((error) => {
      if (this.#abort.signal.aborted) return;
      // Not connected yet: the client joins as soon as the socket opens.
      const text = error.code === 'not_connected' ? 'Not connected; joining when the connection is back' : error.message;
      this.#notice(text);
      this.#log('error', `join: ${text}`);
    });
  }

  leave() {
    this.#client.leave(this.#group).catch((error) => {
      if (this.#abort.signal.aborted) return;
      const text = error.code === 'not_connected' ? 'Not connected; leaving when the connection is back' : error.message;
      this.#notice(text);
      this.#log('error', `leave: ${text}`);
    });
  }

  /** Sends what the input holds; it is cleared once the server took it. */
  sendInput() {
    const input = this.#doc.getElementById('chat-input');
    const text = input.value.trim();
    if (!text || this.#state !== 'joined') return;
    // others: false — this socket gets the message back like every other device, so the
    // list shows exactly what the group saw.
    this.#client.send(this.#group, { text }, { others: false }).then(
      () => {
        if (input.value.trim() === text) input.value = '';
      },
      (error) => {
        if (!this.#abort.signal.aborted) this.#notice(`Not sent: ${error.message}`);
      },
    );
  }

  // ---------------------------------------------------------------- events

  #onJoined() {
    const wasLeft = this.#state !== 'joined';
    this.#setState('joined');
    if (wasLeft) {
      this.#joinNotice = this.#notice('You joined the lobby');
      this.#log('chat', `You joined ${this.#group}`);
      this.#loadHistory();
    }
    this.#loadPresence();
  }

  #onLeft() {
    const wasJoined = this.#state === 'joined';
    this.#setState('left');
    this.#online.clear();
    if (wasJoined) {
      this.#notice('You left the lobby');
      this.#log('chat', `You left ${this.#group}`);
    }
  }

  #onMessage(message) {
    if (!this.#addMessage(message)) return;
    if (!message.recovered) this.#log('chat', `${this.#fromName(message.from)}: ${messageText(message.data)}`);
  }

  #onRecovered({ count, complete }) {
    if (count === 0 && complete) return;
    const missed = `${count} missed ${count === 1 ? 'message' : 'messages'}`;
    const text = complete ? `Back online: ${missed}` : `Back online: ${missed}; older ones were no longer kept`;
    this.#notice(text, { kind: 'recovered', count });
    this.#log('chat', text);
  }

  #memberEvent(user, online, change) {
    if (this.#presenceBacklog) this.#presenceBacklog.push([user, online]);
    this.#applyMember(user, online);
    this.#renderMembers();
    if (change) {
      this.#notice(`${this.#userName(user)} ${change}`);
      this.#log('chat', `${this.#userName(user)} ${change} ${this.#group}`);
    }
  }

  #applyMember(user, online) {
    if (online) this.#online.set(user, Math.max(1, this.#online.get(user) ?? 0));
    else this.#online.delete(user);
  }

  // ---------------------------------------------------------------- loads

  async #loadHistory() {
    const list = this.#doc.getElementById('chat-messages');
    list.dataset.history = 'loading';
    try {
      const reply = await this.#client.history(this.#group, { limit: HISTORY_ON_JOIN });
      if (this.#abort.signal.aborted) return;
      const anchor = this.#joinNotice;
      for (const m of reply.messages ?? []) this.#addMessage({ group: this.#group, ...m }, anchor);
      if (reply.complete === false && anchor?.isConnected) {
        anchor.before(this.#noticeItem('Older messages were no longer kept', 'history'));
      }
      list.dataset.history = 'loaded';
    } catch (error) {
      if (this.#abort.signal.aborted) return;
      list.dataset.history = 'failed';
      if (error.code !== 'unknown_action') this.#log('error', `history: ${error.message}`);
    }
  }

  async #loadPresence() {
    const backlog = [];
    this.#presenceBacklog = backlog;
    try {
      let online;
      try {
        const reply = await this.#client.presence(this.#group);
        online = new Map((reply.members ?? []).map((m) => [m.user, m.devices]));
      } catch (error) {
        if (error.code !== 'unknown_action') throw error;
        // A server without `presence`: the stored members, online or not.
        const reply = await this.#client.members(this.#group);
        online = new Map((reply.users ?? []).map((user) => [user, 1]));
      }
      if (this.#abort.signal.aborted || this.#presenceBacklog !== backlog || this.#state !== 'joined') return;
      this.#online = online;
      for (const [user, isOnline] of backlog) this.#applyMember(user, isOnline);
      this.#renderMembers();
    } catch {
      /* a list is a nicety; the events keep it current */
    } finally {
      if (this.#presenceBacklog === backlog) this.#presenceBacklog = null;
    }
  }

  // ---------------------------------------------------------------- rendering

  #setState(state) {
    this.#state = state;
    showState(this.#doc, state);
  }

  #fromName(from) {
    if (from == null) return 'Presence';
    return from === this.#self ? `${this.#userName(from)} (you)` : this.#userName(from);
  }

  #renderMembers() {
    const list = this.#doc.getElementById('chat-members');
    if (this.#state !== 'joined') {
      list.replaceChildren();
      return;
    }
    const names = [...this.#online]
      .map(([user, devices]) => ({ user, devices, name: this.#userName(user) }))
      .sort((a, b) => a.name.localeCompare(b.name));
    list.replaceChildren(
      ...names.map(({ user, devices, name }) => {
        const item = this.#el('li', { class: 'chat-member' });
        item.dataset.user = user;
        item.dataset.devices = String(devices);
        item.append(this.#el('span', { class: 'chat-member-name', text: user === this.#self ? `${name} (you)` : name }));
        if (devices > 1) item.append(this.#el('span', { class: 'muted', text: ` · ${devices} devices` }));
        return item;
      }),
    );
  }

  #el(tag, { class: className, text } = {}) {
    const node = this.#doc.createElement(tag);
    if (className) node.className = className;
    if (text != null) node.textContent = text;
    return node;
  }

  /**
   * Adds a message in seq order; false when its seq is shown already. With `anchor` (the
   * history loaded on joining), not below that node.
   */
  #addMessage({ seq, ts, from, data, recovered }, anchor = null) {
    const hasSeq = Number.isSafeInteger(seq);
    if (hasSeq) {
      if (this.#shown.has(seq)) return false;
      this.#shown.add(seq);
    }
    const at = typeof ts === 'number' ? ts : Date.now();
    const item = this.#el('li', { class: 'chat-entry chat-message' });
    item.dataset.kind = 'message';
    if (hasSeq) item.dataset.seq = String(seq);
    if (from != null) item.dataset.from = from;
    if (recovered) item.dataset.recovered = 'true';
    const time = this.#el('time', { text: timeOfDay(at) });
    time.dateTime = new Date(at).toISOString();
    item.append(time, this.#el('strong', { class: 'chat-from', text: this.#fromName(from) }), this.#el('span', { class: 'chat-text', text: messageText(data) }));

    const list = this.#doc.getElementById('chat-messages');
    const stick = list.scrollHeight - list.scrollTop - list.clientHeight < 24;
    let before = null;
    if (hasSeq) {
      // After the last message with a smaller seq (notices stay where they are).
      for (const node of [...list.children].reverse()) {
        const other = Number(node.dataset.seq);
        if (node.dataset.seq === undefined) continue;
        if (other < seq) break;
        before = node;
      }
    }
    const FOLLOWING = 4; // Node.DOCUMENT_POSITION_FOLLOWING
    if (anchor?.isConnected && (before === null || anchor.compareDocumentPosition(before) & FOLLOWING)) before = anchor;
    list.insertBefore(item, before);
    this.#trim(list);
    if (stick || !before) list.scrollTop = list.scrollHeight;
    return true;
  }

  /** Appends a notice (no seq) to the list; returns its item. */
  #notice(text, { kind = 'notice', count } = {}) {
    const list = this.#doc.getElementById('chat-messages');
    const item = this.#noticeItem(text, kind, count);
    list.append(item);
    this.#trim(list);
    list.scrollTop = list.scrollHeight;
    return item;
  }

  #noticeItem(text, kind, count) {
    const at = Date.now();
    const item = this.#el('li', { class: 'chat-entry chat-notice' });
    item.dataset.kind = kind;
    if (count !== undefined) item.dataset.count = String(count);
    const time = this.#el('time', { text: timeOfDay(at) });
    time.dateTime = new Date(at).toISOString();
    item.append(time, this.#el('span', { class: 'chat-text', text }));
    return item;
  }

  #trim(list) {
    while (list.children.length > CHAT_LIMIT) list.firstElementChild.remove();
  }
}
