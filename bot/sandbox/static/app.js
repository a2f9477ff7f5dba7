// Reunite sandbox chat page. Plain JS, no build step. All user/bot text goes through
// textContent / createTextNode: never innerHTML.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined && text !== null) n.textContent = String(text);
    return n;
  };
  const ICONS = {
    pin: "M12 2a7 7 0 0 0-7 7c0 5.2 7 13 7 13s7-7.8 7-13a7 7 0 0 0-7-7zm0 9.5A2.5 2.5 0 1 1 12 6.5a2.5 2.5 0 0 1 0 5z",
    file: "M6 2h8l6 6v12a2 2 0 0 1-2 2H6a2 2 0 0 1-2-2V4a2 2 0 0 1 2-2zm7 1.5V9h5.5L13 3.5z",
    person: "M12 12a5 5 0 1 0 0-10 5 5 0 0 0 0 10zm0 2c-4.4 0-9 2.2-9 5v3h18v-3c0-2.8-4.6-5-9-5z",
    reply: "M10 9V5l-7 7 7 7v-4.1c5 0 8.5 1.6 11 5.1-1-5-4-10-11-11z",
    link: "M14 3h7v7h-2V6.4l-9.3 9.3-1.4-1.4L17.6 5H14V3zM5 5h6v2H5v12h12v-6h2v6a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2V7a2 2 0 0 1 2-2z",
  };
  function icon(name) {
    const NS = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("class", "ico");
    svg.setAttribute("aria-hidden", "true");
    const path = document.createElementNS(NS, "path");
    path.setAttribute("d", ICONS[name]);
    svg.append(path);
    return svg;
  }
  const DEFAULT_LAT = 34.3416, DEFAULT_LON = 108.9398; // Xi'an
  const SAFE_URL = /^(https?:|tg:|mailto:)/i;

  const state = {
    users: [],
    current: null,          // user id
    cursor: 0,              // highest rev seen in the current chat
    messages: new Map(),    // message_id -> view
    els: new Map(),         // block key -> element
    seen: JSON.parse(localStorage.getItem("sandbox-seen") || "{}"),
    toasts: new Set(),
    replyTo: null,
    pollCtl: null,
    pollGen: 0,
    kbUsed: null,           // message_id of a one-time keyboard already used
    lastLoc: null,
  };

  async function api(path, opts) {
    const res = await fetch(path, opts);
    let body = null;
    try { body = await res.json(); } catch (e) { /* not JSON */ }
    if (!res.ok) throw new Error((body && body.error) || res.status + " " + res.statusText);
    return body;
  }
  const postJSON = (path, data) => api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(data) });

  function colorFor(id) {
    const colors = ["#e17076", "#7bc862", "#65aadd", "#a695e7", "#ee7aae", "#6ec9cb", "#faa774", "#7c8fa3"];
    return colors[Math.abs(Number(id)) % colors.length];
  }
  function displayName(u) { return [u.first_name, u.last_name].filter(Boolean).join(" ") || "User " + u.id; }
  function fmtTime(ts) { const d = new Date(ts * 1000); return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }); }
  function fmtSize(n) {
    if (n == null) return "";
    if (n < 1024) return n + " B";
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KB";
    return (n / 1024 / 1024).toFixed(1) + " MB";
  }

  // ------------------------------------------------------------------ users
  async function loadUsers() {
    try {
      state.users = await api("/sandbox/api/users");
    } catch (e) { return; }
    if (state.current != null) state.seen[state.current] = (state.users.find((u) => u.id === state.current) || {}).received || 0;
    localStorage.setItem("sandbox-seen", JSON.stringify(state.seen));
    renderUsers();
    if (state.current == null && state.users.length) {
      const wanted = Number(new URLSearchParams(location.search).get("user"));
      const saved = wanted || Number(localStorage.getItem("sandbox-user"));
      const pick = state.users.find((u) => u.id === saved) || state.users[0];
      selectUser(pick.id, !!wanted && pick.id === wanted);
    }
    if (state.current != null) renderHeader();
  }

  function renderUsers() {
    const list = $("users");
    list.replaceChildren();
    for (const u of state.users) {
      const li = el("li");
      const b = el("button");
      b.type = "button";
      b.setAttribute("role", "option");
      b.setAttribute("aria-selected", String(u.id === state.current));
      const av = el("div", "avatar", (u.first_name || "?").slice(0, 1).toUpperCase());
      av.style.background = colorFor(u.id);
      const main = el("div", "u-main");
      const name = el("div", "u-name", displayName(u));
      if (u.label) name.append(el("span", "pill", u.label));
      if (u.blocked) name.append(el("span", "pill blocked", "blocked the bot"));
      main.append(name, el("div", "u-meta muted", "id " + u.id + (u.language_code ? " · " + u.language_code : "") + (u.username ? " · @" + u.username : "")));
      b.append(av, main);
      const unread = (u.received || 0) - (state.seen[u.id] || 0);
      if (u.id !== state.current && unread > 0) b.append(el("span", "badge", unread));
      b.addEventListener("click", () => selectUser(u.id, true));
      li.append(b);
      list.append(li);
    }
  }

  function renderHeader() {
    const u = state.users.find((x) => x.id === state.current);
    if (!u) return;
    $("chat-name").textContent = "Chat with " + $("bot-name").textContent;
    $("chat-sub").textContent = "you are " + displayName(u) + " (id " + u.id + (u.label ? ", " + u.label : "") + ")";
    const av = $("chat-avatar");
    av.textContent = (u.first_name || "?").slice(0, 1).toUpperCase();
    av.style.background = colorFor(u.id);
    const blk = $("block");
    blk.hidden = false;
    blk.textContent = u.blocked ? "Unblock bot" : "Block bot";
    blk.classList.toggle("on", !!u.blocked);
  }

  function selectUser(id, showChat) {
    if (showChat) $("app").classList.add("show-chat");
    if (state.current === id) return;
    state.current = id;
    localStorage.setItem("sandbox-user", String(id));
    state.cursor = 0;
    state.messages.clear();
    state.els.clear();
    state.replyTo = null;
    state.kbUsed = null;
    $("reply-bar").hidden = true;
    $("location-form").hidden = true;
    $("messages").replaceChildren();
    renderUsers();
    renderHeader();
    renderMessages();
    startPolling();
    $("text").focus();
  }

  // ------------------------------------------------------------------ messages
  function startPolling() {
    if (state.pollCtl) state.pollCtl.abort();
    const gen = ++state.pollGen;
    const ctl = new AbortController();
    state.pollCtl = ctl;
    const chat = state.current;
    (async () => {
      let wait = 0;
      while (gen === state.pollGen) {
        try {
          const list = await api(`/sandbox/api/chats/${chat}/messages?after=${state.cursor}&wait=${wait}`, { signal: ctl.signal });
          if (gen !== state.pollGen) return;
          merge(list, wait === 0);
          wait = 25;
        } catch (e) {
          if (ctl.signal.aborted || gen !== state.pollGen) return;
          await new Promise((r) => setTimeout(r, 1500));
        }
      }
    })();
  }

  function merge(list, initial) {
    if (!list.length) return;
    for (const m of list) {
      state.messages.set(m.message_id, m);
      if (m.rev > state.cursor) state.cursor = m.rev;
      const a = m.callback_answer;
      if (a && a.id && !state.toasts.has(a.id)) {
        state.toasts.add(a.id);
        if (a.text && !initial) showToast(a.text, a.show_alert);
      }
    }
    renderMessages();
  }

  function blocksOf(sorted) {
    const blocks = [];
    for (const m of sorted) {
      const last = blocks[blocks.length - 1];
      if (m.media_group_id && m.photo && last && last.gid === m.media_group_id && last.dir === m.direction && last.items.length < 10) last.items.push(m);
      else blocks.push({ gid: (m.photo && m.media_group_id) || null, dir: m.direction, items: [m] });
    }
    return blocks;
  }

  function renderMessages() {
    const box = $("messages");
    const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
    const sorted = [...state.messages.values()].sort((a, b) => a.message_id - b.message_id);
    if (!sorted.length) {
      box.replaceChildren(el("div", "empty", state.current == null ? "Add or pick a user on the left." : "No messages yet. Say hello, send /start, a photo, a file or a location."));
      state.els.clear();
      renderReplyKeyboard(sorted);
      return;
    }
    const emptyNote = box.querySelector(".empty");
    if (emptyNote) emptyNote.remove();
    const wanted = [];
    let added = false;
    for (const b of blocksOf(sorted)) {
      const key = b.items[0].message_id;
      const ver = b.items.map((m) => m.message_id + ":" + m.rev).join(",");
      let node = state.els.get(key);
      if (!node || node.dataset.ver !== ver) {
        const fresh = renderBlock(b);
        fresh.dataset.ver = ver;
        if (node) node.replaceWith(fresh); else added = true;
        state.els.set(key, fresh);
        node = fresh;
      }
      wanted.push(node);
    }
    const keep = new Set(wanted);
    for (const child of [...box.children]) if (!keep.has(child)) child.remove();
    wanted.forEach((node, i) => { if (box.children[i] !== node) box.insertBefore(node, box.children[i] || null); });
    renderReplyKeyboard(sorted);
    if (nearBottom || added) scrollToEnd();
  }

  function scrollToEnd() {
    const box = $("messages");
    box.scrollTop = box.scrollHeight;
    state.stick = true;
  }

  function renderBlock(b) {
    const first = b.items[0];
    const row = el("div", "row " + (first.direction === "in" ? "in" : "out"));
    row.dataset.mid = String(first.message_id);
    const bubble = el("div", "bubble");
    if (b.items.every((m) => m.deleted)) bubble.classList.add("deleted");
    if (first.from_name && first.direction === "in") bubble.append(el("div", "from-name", first.from_name));
    if (first.reply_to) bubble.append(el("div", "quote", (first.reply_to.direction === "out" ? "Bot: " : "You: ") + first.reply_to.text));

    const body = el("div", "body");
    if (b.items.length > 1) {
      const grid = el("div", "album");
      for (const m of b.items) grid.append(photoLink(m.photo, "album photo"));
      body.append(grid);
    } else if (first.photo) {
      const wrap = photoLink(first.photo, "photo");
      wrap.className = "photo";
      body.append(wrap);
    }
    if (first.document) body.append(renderDoc(first.document));
    if (first.location) {
      const { latitude, longitude } = first.location;
      const loc = el("div", "loc");
      loc.append(icon("pin"), document.createTextNode(" " + latitude.toFixed(5) + ", " + longitude.toFixed(5) + " "));
      const a = el("a", null, "map");
      a.href = `https://www.openstreetmap.org/?mlat=${encodeURIComponent(latitude)}&mlon=${encodeURIComponent(longitude)}#map=15/${encodeURIComponent(latitude)}/${encodeURIComponent(longitude)}`;
      a.target = "_blank";
      a.rel = "noopener noreferrer";
      loc.append(a);
      body.append(loc);
    }
    if (first.contact) {
      const c = el("div", "loc");
      c.append(icon("person"), document.createTextNode(" " + [first.contact.first_name, first.contact.phone_number].filter(Boolean).join(" · ")));
      body.append(c);
    }
    if (first.kind) body.append(el("div", "other", "[" + first.kind + "]"));
    const captioned = b.items.find((m) => m.caption);
    if (first.text != null) body.append(renderText(first.text, first.entities));
    else if (captioned) body.append(renderText(captioned.caption, captioned.caption_entities));
    bubble.append(body);

    const meta = el("div", "meta");
    if (b.items.some((m) => m.deleted)) meta.append(el("span", "tag del", "deleted"));
    if (b.items.some((m) => m.edited)) meta.append(el("span", "tag", "edited"));
    meta.append(el("span", null, fmtTime(first.date)));
    if (!first.deleted) {
      const rb = el("button", "reply-btn");
      rb.append(icon("reply"), document.createTextNode(" reply"));
      rb.type = "button";
      rb.title = "Reply to this message";
      rb.addEventListener("click", () => setReply(first));
      meta.append(rb);
    }
    bubble.append(meta);
    row.append(bubble);

    const rm = first.reply_markup;
    if (rm && Array.isArray(rm.inline_keyboard) && rm.inline_keyboard.length) row.append(renderInlineKeyboard(first, rm.inline_keyboard));
    return row;
  }

  function photoLink(photo, alt) {
    const a = el("a");
    a.href = photo.url;
    a.target = "_blank";
    a.rel = "noopener";
    const img = el("img");
    img.src = photo.url;
    img.alt = alt;
    img.loading = "lazy";
    if (photo.width && photo.height) { img.width = photo.width; img.height = photo.height; }
    img.addEventListener("load", () => { if (state.stick) scrollToEnd(); });
    a.append(img);
    return a;
  }

  function renderDoc(d) {
    const box = el("div", "doc");
    const iconBox = el("div", "doc-icon");
    if (d.mime_type && d.mime_type.startsWith("image/")) {
      const img = el("img");
      img.src = d.url + "?inline=1";
      img.alt = "";
      img.loading = "lazy";
      iconBox.append(img);
    } else {
      iconBox.append(icon("file"));
    }
    const info = el("div");
    const a = el("a", null, d.file_name || "file");
    a.href = d.url;
    a.setAttribute("download", d.file_name || "file");
    info.append(a, el("div", "muted small", [fmtSize(d.file_size), d.mime_type].filter(Boolean).join(" · ")));
    box.append(iconBox, info);
    return box;
  }

  // Entities are in UTF-16 code units, which is how JS indexes strings.
  function renderText(text, entities) {
    const box = el("div", "text");
    if (!entities || !entities.length) { box.textContent = text; return box; }
    const cuts = new Set([0, text.length]);
    for (const e of entities) { cuts.add(Math.max(0, Math.min(text.length, e.offset))); cuts.add(Math.max(0, Math.min(text.length, e.offset + e.length))); }
    const points = [...cuts].sort((a, b) => a - b);
    for (let i = 0; i < points.length - 1; i++) {
      const a = points[i], z = points[i + 1];
      const seg = text.slice(a, z);
      let node = document.createTextNode(seg);
      const active = entities.filter((e) => e.offset <= a && e.offset + e.length >= z).sort((x, y) => y.length - x.length || x.offset - y.offset);
      for (let k = active.length - 1; k >= 0; k--) node = wrap(node, active[k], seg);
      box.append(node);
    }
    return box;
  }

  function wrap(node, e, seg) {
    let w;
    switch (e.type) {
      case "bold": w = el("strong"); break;
      case "italic": w = el("em"); break;
      case "underline": w = el("u"); break;
      case "strikethrough": w = el("s"); break;
      case "code": w = el("code"); break;
      case "pre": w = el("span", "pre"); break;
      case "blockquote": case "expandable_blockquote": w = el("span", "bq"); break;
      case "spoiler":
        w = el("span", "spoiler");
        w.title = "spoiler: click to reveal";
        w.addEventListener("click", () => w.classList.add("shown"));
        break;
      case "text_link": case "url": {
        const href = e.type === "url" ? seg : e.url;
        if (href && SAFE_URL.test(href)) {
          w = el("a");
          w.href = href;
          w.target = "_blank";
          w.rel = "noopener noreferrer";
        } else return node;
        break;
      }
      case "bot_command":
        w = el("span", "cmd");
        w.title = "send " + seg;
        w.addEventListener("click", () => sendText(seg.split("@")[0]));
        break;
      default: return node;
    }
    w.append(node);
    return w;
  }

  function renderInlineKeyboard(msg, rows) {
    const kb = el("div", "ikb");
    for (const row of rows) {
      const r = el("div", "ikb-row");
      for (const btn of row) {
        const b = el("button", null, btn.text);
        b.type = "button";
        if (msg.deleted) b.disabled = true;
        if (btn.callback_data != null) {
          b.addEventListener("click", async () => {
            b.disabled = true;
            try {
              await postJSON("/sandbox/api/press", { user_id: state.current, chat_id: state.current, message_id: msg.message_id, callback_data: btn.callback_data });
            } catch (e) { showToast("Could not press: " + e.message, false); }
            setTimeout(() => { b.disabled = false; }, 400);
          });
        } else if (btn.url && SAFE_URL.test(btn.url)) {
          const ext = el("span", "ext");
          ext.append(icon("link"));
          b.append(ext);
          b.title = btn.url;
          b.addEventListener("click", () => window.open(btn.url, "_blank", "noopener"));
        } else {
          b.disabled = true;
          b.title = "not supported in the sandbox";
        }
        r.append(b);
      }
      kb.append(r);
    }
    return kb;
  }

  // Latest reply keyboard the bot sent (until removed, or used once if one_time_keyboard).
  function renderReplyKeyboard(sorted) {
    const box = $("reply-keyboard");
    let current = null;
    let afterIt = false;
    for (const m of sorted) {
      if (m.direction === "out" && m.reply_keyboard) { current = m; afterIt = false; }
      else if (current && m.direction === "in") afterIt = true;
    }
    const kb = current && current.reply_keyboard;
    const textBox = $("text");
    textBox.placeholder = kb && kb.force_reply && kb.input_field_placeholder ? kb.input_field_placeholder : "Message";
    if (!kb || !Array.isArray(kb.keyboard) || (kb.one_time_keyboard && afterIt)) {
      box.hidden = true;
      box.replaceChildren();
      return;
    }
    box.replaceChildren();
    for (const row of kb.keyboard) {
      const r = el("div", "rk-row");
      for (const raw of row) {
        const btn = typeof raw === "string" ? { text: raw } : raw;
        const b = el("button");
        b.type = "button";
        if (btn.request_location) b.append(icon("pin"), document.createTextNode(" "));
        else if (btn.request_contact) b.append(icon("person"), document.createTextNode(" "));
        b.append(document.createTextNode(btn.text));
        b.addEventListener("click", () => {
          if (btn.request_location) openLocation(btn.text);
          else if (btn.request_contact) sendContact();
          else sendText(btn.text);
        });
        r.append(b);
      }
      box.append(r);
    }
    box.hidden = false;
  }

  // ------------------------------------------------------------------ sending
  function setReply(m) {
    state.replyTo = m.message_id;
    $("reply-text").textContent = m.text || m.caption || (m.photo ? "photo" : m.document ? m.document.file_name : m.location ? "location" : "message");
    $("reply-bar").hidden = false;
    $("text").focus();
  }
  function clearReply() { state.replyTo = null; $("reply-bar").hidden = true; }

  async function guarded(fn) {
    if (state.current == null) { showToast("Pick or add a user first", false); return; }
    const send = $("send");
    send.disabled = true;
    try { await fn(); } catch (e) { showToast("Not sent: " + e.message, true); } finally { send.disabled = false; }
  }

  function sendText(text) {
    return guarded(async () => {
      const body = { user_id: state.current, text };
      if (state.replyTo) body.reply_to_message_id = state.replyTo;
      await postJSON("/sandbox/api/send", body);
      clearReply();
    });
  }

  function sendContact() {
    const u = state.users.find((x) => x.id === state.current) || {};
    return guarded(async () => {
      await postJSON("/sandbox/api/send", { user_id: state.current, contact: { phone_number: "+1555" + String(u.id).padStart(7, "0").slice(-7), first_name: u.first_name || "User", user_id: u.id } });
    });
  }

  function sendFiles(files, kind) {
    if (!files.length) return;
    const caption = $("text").value.trim();
    return guarded(async () => {
      const fd = new FormData();
      fd.append("user_id", String(state.current));
      fd.append("kind", kind === "document" ? "document" : files.length > 1 ? "album" : "photo");
      if (caption) fd.append("caption", caption);
      if (state.replyTo) fd.append("reply_to_message_id", String(state.replyTo));
      for (const f of [...files].slice(0, 10)) fd.append("file", f, f.name);
      await api("/sandbox/api/send", { method: "POST", body: fd });
      $("text").value = "";
      autoGrow();
      clearReply();
    });
  }

  function openLocation(prompt) {
    $("location-prompt").textContent = prompt || "Share location";
    const last = state.lastLoc || { latitude: DEFAULT_LAT, longitude: DEFAULT_LON };
    $("lat").value = last.latitude;
    $("lon").value = last.longitude;
    $("location-form").hidden = false;
    $("lat").focus();
  }

  function autoGrow() {
    const t = $("text");
    t.style.height = "auto";
    t.style.height = Math.min(140, t.scrollHeight + 2) + "px";
    t.style.overflowY = t.scrollHeight > 140 ? "auto" : "hidden";
  }

  let toastTimer = null;
  function showToast(text, alert) {
    const t = $("toast");
    t.replaceChildren(document.createTextNode(text));
    t.className = alert ? "alert" : "";
    t.hidden = false;
    clearTimeout(toastTimer);
    if (alert) {
      const ok = el("button", null, "OK");
      ok.type = "button";
      ok.addEventListener("click", () => { t.hidden = true; });
      t.append(ok);
    } else {
      toastTimer = setTimeout(() => { t.hidden = true; }, 3500);
    }
  }

  // ------------------------------------------------------------------ settings
  async function loadConfig() {
    try {
      const c = await api("/sandbox/api/config");
      $("flood").checked = !!c.flood_control;
      $("flood-scale").value = c.flood_scale;
      if (c.bot && c.bot.username) $("bot-name").textContent = "@" + c.bot.username;
    } catch (e) { /* ignore */ }
  }
  async function saveConfig() {
    try {
      await postJSON("/sandbox/api/config", { flood_control: $("flood").checked, flood_scale: Number($("flood-scale").value) || 1 });
    } catch (e) { showToast("Settings not saved: " + e.message, true); }
  }
  async function loadStats() {
    if (!$("settings").open) return;
    try {
      const s = await api("/sandbox/api/stats");
      $("stats").textContent = `updates in: ${s.updates} · bot messages out: ${s.sent_messages} · refused by flood limits (429): ${s.flood_429} · pending: ${s.pending_updates}`;
    } catch (e) { /* ignore */ }
  }

  // ------------------------------------------------------------------ wiring
  $("composer").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = $("text").value;
    if (!text.trim()) return;
    $("text").value = "";
    autoGrow();
    sendText(text);
  });
  $("text").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("text").addEventListener("input", autoGrow);
  $("messages").addEventListener("scroll", () => {
    const box = $("messages");
    state.stick = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  });
  $("attach-photo").addEventListener("click", () => $("photo-input").click());
  $("attach-file").addEventListener("click", () => $("file-input").click());
  $("photo-input").addEventListener("change", (ev) => { sendFiles(ev.target.files, "photo"); ev.target.value = ""; });
  $("file-input").addEventListener("change", (ev) => { sendFiles(ev.target.files, "document"); ev.target.value = ""; });
  $("share-location").addEventListener("click", () => ($("location-form").hidden ? openLocation() : ($("location-form").hidden = true)));
  $("location-cancel").addEventListener("click", () => { $("location-form").hidden = true; });
  $("location-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const latitude = Number($("lat").value), longitude = Number($("lon").value);
    if (!(latitude >= -90 && latitude <= 90 && longitude >= -180 && longitude <= 180)) { showToast("Latitude -90..90, longitude -180..180", true); return; }
    state.lastLoc = { latitude, longitude };
    $("location-form").hidden = true;
    guarded(async () => {
      const body = { user_id: state.current, location: { latitude, longitude } };
      if (state.replyTo) body.reply_to_message_id = state.replyTo;
      await postJSON("/sandbox/api/send", body);
      clearReply();
    });
  });
  $("reply-cancel").addEventListener("click", clearReply);
  $("back").addEventListener("click", () => $("app").classList.remove("show-chat"));
  $("block").addEventListener("click", async () => {
    const u = state.users.find((x) => x.id === state.current);
    if (!u) return;
    try { await postJSON("/sandbox/api/block", { user_id: u.id, blocked: !u.blocked }); } catch (e) { showToast(e.message, true); }
    loadUsers();
  });
  $("add-user").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const name = $("new-name").value.trim();
    if (!name) return;
    try {
      const u = await postJSON("/sandbox/api/users", { first_name: name, language_code: $("new-lang").value });
      $("new-name").value = "";
      await loadUsers();
      selectUser(u.id, true);
    } catch (e) { showToast("Could not add user: " + e.message, true); }
  });
  $("flood").addEventListener("change", saveConfig);
  $("flood-scale").addEventListener("change", saveConfig);
  $("settings").addEventListener("toggle", loadStats);

  renderMessages();
  loadConfig();
  loadUsers();
  setInterval(() => { loadUsers(); loadStats(); }, 3000);
})();
