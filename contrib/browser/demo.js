// demo.js: the demo page at the relay's `/`. It subscribes to the inboxes
// typed in the form and lists each mail as it arrives.
//
// Trust boundary: subject, sender and every other field of an event come from
// whoever sent the mail. They are inserted with textContent only, never as
// HTML, and the page's Content-Security-Policy (script-src 'self', img-src
// 'none') blocks anything that slipped through.
//
// Page options live in the fragment, because the relay answers `/` with a
// query string as a subscription (`/?inbox=a&inbox=b`) instead of this page:
// `#inbox=a,b` subscribes at once (the form keeps it in the address bar), and
// `#transport=longpoll` or `#transport=sse` forces a transport instead of
// letting the client choose.

(function () {
  "use strict";

  /** Oldest entries are removed past this many, so a busy inbox cannot grow the page without bound. */
  const MAX_LISTED = 200;

  const form = document.getElementById("inbox-form");
  const input = document.getElementById("inbox");
  const statusLine = document.getElementById("status");
  const gapNotice = document.getElementById("gap");
  const list = document.getElementById("mail-list");
  const emptyNote = document.getElementById("empty");

  const pageOptions = new URLSearchParams(location.hash.slice(1));
  const transport = pageOptions.get("transport") || "auto";
  let subscription = null;

  /** Splits the form value into inbox names: commas or spaces separate them. */
  function parseInboxes(text) {
    return text.split(/[\s,]+/).filter((name) => name !== "");
  }

  function watch(names) {
    if (subscription !== null) subscription.close();
    list.replaceChildren();
    emptyNote.hidden = false;
    gapNotice.hidden = true;

    // Keep the inboxes in the address so a reload watches them again.
    pageOptions.set("inbox", names.join(","));
    history.replaceState(null, "", "#" + pageOptions.toString());

    try {
      subscription = Notify.subscribe(names.length === 1 ? names[0] : names, {
        // The page's own directory, so the demo also works behind a proxy prefix such as /notify/.
        baseUrl: new URL(".", location.href).href,
        transport: transport,
        onMail: showMail,
        onGap: showGap,
        onStatus: showStatus,
        onError: (error) => console.warn(error.message),
      });
    } catch (error) {
      subscription = null;
      setStatus("closed", error.message);
    }
  }

  /** Adds one mail at the top of the list, as text only. */
  function showMail(message) {
    const item = document.createElement("li");
    item.className = "mail";
    item.dataset.id = String(message.id);

    const time = document.createElement("time");
    time.className = "mail-time";
    const received = new Date(message.receivedAt);
    if (!Number.isNaN(received.getTime())) {
      time.dateTime = received.toISOString();
      time.textContent = received.toLocaleTimeString();
    }

    const subject = document.createElement("div");
    subject.className = "mail-subject";
    subject.textContent = message.subject || "(no subject)";

    const sender = document.createElement("div");
    sender.className = "mail-from";
    sender.textContent = message.from || "(no sender)";

    const inbox = document.createElement("div");
    inbox.className = "mail-inbox";
    inbox.textContent = "to " + (message.recipient || message.inbox);

    item.append(time, subject, sender, inbox);
    list.prepend(item);
    emptyNote.hidden = true;
    while (list.children.length > MAX_LISTED) {
      list.lastElementChild.remove();
    }
  }

  function showGap() {
    gapNotice.hidden = false;
  }

  function showStatus(status) {
    const via = status.transport === "sse" ? "event stream" : "long-poll";
    switch (status.state) {
      case "connecting":
        setStatus(status.state, "Connecting (" + via + ")…");
        break;
      case "open":
        setStatus(status.state, "Live (" + via + "): new mail appears below.");
        break;
      case "reconnecting":
        setStatus(status.state, "Reconnecting (" + via + ")…");
        break;
      case "waiting": {
        const seconds = Math.ceil(status.retryInMs / 1000);
        setStatus(status.state, "Connection failed (" + status.error.message + "); retrying in " + seconds + " s.");
        break;
      }
      case "paused":
        setStatus(status.state, "Paused while this tab is hidden.");
        break;
      case "closed":
        setStatus(status.state, status.error ? status.error.message : "Stopped.");
        break;
    }
    statusLine.dataset.transport = status.transport;
  }

  function setStatus(state, text) {
    statusLine.dataset.state = state;
    statusLine.textContent = text;
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const names = parseInboxes(input.value);
    if (names.length > 0) watch(names);
  });
  document.getElementById("gap-reload").addEventListener("click", () => location.reload());

  const initial = parseInboxes(pageOptions.get("inbox") || "");
  if (initial.length > 0) {
    input.value = initial.join(", ");
    watch(initial);
  }

  // The options live in the fragment, which a browser can change without
  // reloading; reload so that a new #inbox= or #transport= takes effect.
  // watch() writes the fragment with replaceState, which fires no event.
  window.addEventListener("hashchange", () => location.reload());
})();
