// notify.js: browser client for notify-relay. It subscribes to one or more
// inboxes and calls back once for every new-mail event.
//
// Loading: this is a classic script with no `export`, so one file works both
// ways. A `<script src>` tag defines `globalThis.Notify`. An ES module may
// `import "/static/notify.js"` for that side effect and then read
// `globalThis.Notify`. Modules that want a named import use notify.mjs,
// which re-exports `subscribe` from here.
//
// Transports: an event stream (EventSource, `?format=sse`) when the browser
// has EventSource, otherwise long-poll (`?format=json&since=<cursor>`). The
// client switches to long-poll when EventSource fails to open three times in
// a row while the relay responds to plain requests. Each connection passes the
// last cursor the client saw, so the relay also sends the events that arrived
// while the client reconnected. The cursor goes in the query string
// (`lastEventId=` or `since=`), so cross-origin requests need no preflight.
// The client reopens each event stream itself instead of letting EventSource
// reconnect, because the browser would resend the first URL and its stale
// `lastEventId=`.
//
// Trust boundary: the subject, sender and every other field of an event come
// from whoever sent the mail. They reach `onMail` as plain strings, and the
// page must insert them with `textContent`, never as HTML.
//
// Known limits: after falling back to long-poll the client stays on long-poll
// until `close()`. The relay keeps a short history per inbox (16 events and
// one hour by default), so a client away longer than that gets `onGap`
// instead of the missed events.

(function (root) {
  "use strict";

  /** Long-poll wait requested from the relay, in seconds, below the common proxy timeout of 30 s. */
  const POLL_TIMEOUT_SECONDS = 25;
  /** Extra time a long-poll may take before the client aborts it as stalled, in milliseconds. */
  const POLL_STALL_MARGIN_MS = 10000;
  /** A long-poll that ends with no event sooner than this, in milliseconds, delays the next one by this. */
  const POLL_MIN_INTERVAL_MS = 1000;
  /** First retry delay after an error, in milliseconds. It doubles with each failure up to the maximum. */
  const BACKOFF_INITIAL_MS = 1000;
  const BACKOFF_MAX_MS = 30000;
  /** An event stream open at least this long counts as healthy when it ends, in milliseconds. */
  const STREAM_HEALTHY_MS = 3000;
  /** Event streams in a row that fail to open, with the relay reachable, before switching to long-poll. */
  const STREAM_FAILURES_BEFORE_FALLBACK = 3;

  /**
   * Subscribes to `inboxes` and returns a handle whose `close()` stops it.
   *
   * @param {string | string[]} inboxes one inbox name, or several (one request for all)
   * @param {object} [options] see notify.d.ts for every option
   */
  function subscribe(inboxes, options) {
    const settings = normalizeOptions(inboxes, options || {});
    const subscription = new Subscription(settings);
    subscription.start();
    return {
      close: () => subscription.close(),
      get cursor() {
        return subscription.cursor;
      },
      get transport() {
        return subscription.transport;
      },
    };
  }

  /** Checks the arguments of `subscribe` and fills in defaults. */
  function normalizeOptions(inboxes, options) {
    const names = Array.isArray(inboxes) ? inboxes.slice() : [inboxes];
    if (names.length === 0) {
      throw new TypeError("notify: subscribe() needs at least one inbox name");
    }
    for (const name of names) {
      if (typeof name !== "string" || name === "") {
        throw new TypeError("notify: inbox names must be non-empty strings, got " + JSON.stringify(name));
      }
    }

    const transport = options.transport || "auto";
    if (transport !== "auto" && transport !== "sse" && transport !== "longpoll") {
      throw new TypeError('notify: transport must be "auto", "sse" or "longpoll", got ' + JSON.stringify(transport));
    }

    // A trailing slash would make `//inbox`, which the relay reads as an asset path.
    const baseUrl = String(options.baseUrl || "").replace(/\/+$/, "");
    const nothing = () => {};
    return {
      names: names,
      multi: Array.isArray(inboxes),
      baseUrl: baseUrl,
      transport: transport,
      cursor: options.cursor || null,
      pauseWhenHidden: options.pauseWhenHidden !== false,
      onMail: options.onMail || nothing,
      onGap: options.onGap || nothing,
      onError: options.onError || nothing,
      onStatus: options.onStatus || nothing,
    };
  }

  /** The state of one `subscribe()` call: cursor, transport, timers and the open connection. */
  class Subscription {
    constructor(settings) {
      this.settings = settings;
      this.cursor = settings.cursor;
      this.closed = false;
      this.paused = false;
      // Transport of the next connection. "sse" may turn into "longpoll" for good.
      const hasEventSource = typeof root.EventSource === "function";
      this.transport = settings.transport === "longpoll" || !hasEventSource ? "longpoll" : "sse";
      // Consecutive failed connections, which set the retry delay.
      this.failures = 0;
      // Consecutive event streams that failed while a plain request to the relay worked.
      this.streamFailures = 0;
      // Every connection gets a new generation, and callbacks of an older one are ignored.
      this.generation = 0;
      this.eventSource = null;
      this.abortController = null;
      this.retryTimer = null;
      this.onVisibilityChange = () => this.updateVisibility();
    }

    start() {
      if (this.settings.pauseWhenHidden && typeof document !== "undefined") {
        document.addEventListener("visibilitychange", this.onVisibilityChange);
        if (document.hidden) {
          this.paused = true;
          this.report("paused");
          return;
        }
      }
      this.connect();
    }

    /** Stops for good. `error` is the reason when the relay rejected the request. */
    close(error) {
      if (this.closed) return;
      this.closed = true;
      this.disconnect();
      if (typeof document !== "undefined") {
        document.removeEventListener("visibilitychange", this.onVisibilityChange);
      }
      this.report("closed", error ? { error: error } : null);
    }

    /** Closes the open connection and cancels a pending retry, keeping the cursor. */
    disconnect() {
      this.generation += 1;
      if (this.retryTimer !== null) {
        clearTimeout(this.retryTimer);
        this.retryTimer = null;
      }
      if (this.eventSource !== null) {
        this.eventSource.close();
        this.eventSource = null;
      }
      if (this.abortController !== null) {
        this.abortController.abort();
        this.abortController = null;
      }
    }

    /** Pauses while the page is hidden and resumes from the cursor when it shows again. */
    updateVisibility() {
      if (this.closed) return;
      if (document.hidden && !this.paused) {
        this.paused = true;
        this.disconnect();
        this.report("paused");
      } else if (!document.hidden && this.paused) {
        this.paused = false;
        // A page coming back should catch up at once, not after a long backoff.
        this.failures = 0;
        this.connect();
      }
    }

    connect() {
      if (this.closed || this.paused) return;
      this.disconnect();
      this.report(this.failures === 0 ? "connecting" : "reconnecting");
      if (this.transport === "sse") {
        this.openStream(this.generation);
      } else {
        this.poll(this.generation);
      }
    }

    /** Schedules the next connection after `delayMs`, unless closed or paused meanwhile. */
    scheduleConnect(delayMs) {
      const generation = this.generation;
      this.retryTimer = setTimeout(() => {
        this.retryTimer = null;
        if (generation === this.generation) this.connect();
      }, delayMs);
    }

    /** Counts a failed connection, reports it to the page, and schedules a retry with backoff. */
    fail(error, minimumDelayMs) {
      // 400 means the relay rejected the inbox name or a parameter, so a retry would fail the same way.
      if (error.status === 400) {
        this.call(this.settings.onError, error);
        this.close(error);
        return;
      }

      this.failures += 1;
      const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_INITIAL_MS * 2 ** (this.failures - 1));
      // Jitter spreads the clients of a restarted relay over half the interval.
      const delay = Math.max(minimumDelayMs || 0, Math.round(ceiling * (0.5 + Math.random() * 0.5)));
      error.retryInMs = delay;
      this.report("waiting", { retryInMs: delay, error: error });
      this.call(this.settings.onError, error);
      this.scheduleConnect(delay);
    }

    // MARK: Event stream

    async openStream(generation) {
      // EventSource cannot read the cursor the stream opens with, so without
      // one a stream that ends before the first mail would lose the events of
      // the reconnect. A poll with timeout=0 fetches the current cursor first.
      if (this.cursor === null) {
        const outcome = await this.pollOnce(generation, 0);
        if (generation !== this.generation) return;
        if (!outcome.ok) {
          this.fail(outcome.error, outcome.retryAfterMs);
          return;
        }
      }

      const url = this.url({ format: "sse", lastEventId: this.cursor });
      let source;
      try {
        source = new root.EventSource(url);
      } catch (error) {
        // Only an invalid URL makes the constructor throw, and long-poll reports that as an error.
        this.transport = "longpoll";
        this.connect();
        return;
      }
      this.eventSource = source;
      let openedAt = null;
      let delivered = false;

      source.onopen = () => {
        if (generation !== this.generation) return;
        openedAt = Date.now();
        // The relay's event stream reaches this browser, so failures from now on are no reason to fall back.
        this.streamFailures = 0;
        this.report("open");
      };
      source.addEventListener("mail", (event) => {
        if (generation !== this.generation) return;
        const message = parseJSON(event.data);
        if (message === null) return;
        if (event.lastEventId) this.cursor = event.lastEventId;
        delivered = true;
        this.call(this.settings.onMail, message);
      });
      source.addEventListener("gap", (event) => {
        if (generation !== this.generation) return;
        const info = parseJSON(event.data) || {};
        this.cursor = event.lastEventId || info.cursor || this.cursor;
        this.call(this.settings.onGap, { cursor: this.cursor, inboxes: info.inboxes || this.settings.names });
      });
      source.onerror = () => {
        if (generation !== this.generation) return;
        // Stop the browser's own reconnect: it would resend the first URL.
        source.close();
        this.eventSource = null;
        this.streamEnded(generation, openedAt, delivered);
      };
    }

    /** Decides what follows a closed or failed event stream. */
    async streamEnded(generation, openedAt, delivered) {
      // A stream that delivered mail or stayed open a while ended normally
      // (--sse-max-age or a relay restart): reconnect soon. One that closed
      // at once counts as a failure, so a relay that keeps closing streams
      // gets backoff, but the event stream itself works: no fallback.
      if (openedAt !== null) {
        const openMs = Date.now() - openedAt;
        if (delivered || openMs >= STREAM_HEALTHY_MS) {
          this.failures = 0;
          this.report("reconnecting");
          this.scheduleConnect(Math.round(BACKOFF_INITIAL_MS * (0.5 + Math.random() * 0.5)));
        } else {
          this.fail(new NotifyError("event stream closed " + openMs + " ms after it opened", null, "sse"));
        }
        return;
      }

      // EventSource does not report why it failed. A plain poll with
      // timeout=0 tells a relay that is down from one that responds but whose
      // event stream fails, for example behind a proxy that buffers responses. The
      // poll also delivers what arrived meanwhile.
      const probe = await this.pollOnce(generation, 0);
      if (generation !== this.generation) return;
      if (!probe.ok) {
        this.fail(probe.error, probe.retryAfterMs);
        return;
      }
      this.streamFailures += 1;
      if (this.settings.transport === "auto" && this.streamFailures >= STREAM_FAILURES_BEFORE_FALLBACK) {
        this.transport = "longpoll";
        this.failures = 0;
        this.connect();
        return;
      }
      this.fail(new NotifyError("event stream failed to open while plain requests to the relay succeeded", null, "sse"));
    }

    // MARK: Long-poll

    /** Polls in a loop until a poll fails or the subscription stops. */
    async poll(generation) {
      // The first poll returns at once (timeout=0): it shows that the relay
      // responds, delivers what arrived while disconnected and fetches the
      // cursor. The ones after it wait for mail.
      let timeoutSeconds = 0;
      while (generation === this.generation) {
        const startedAt = Date.now();
        const outcome = await this.pollOnce(generation, timeoutSeconds);
        if (generation !== this.generation) return;
        if (!outcome.ok) {
          this.fail(outcome.error, outcome.retryAfterMs);
          return;
        }

        if (timeoutSeconds === 0) {
          this.failures = 0;
          this.report("open");
          timeoutSeconds = POLL_TIMEOUT_SECONDS;
        } else if (outcome.empty && Date.now() - startedAt < POLL_MIN_INTERVAL_MS) {
          // A server or proxy that ends every poll at once with no event
          // would otherwise make this loop spin.
          await new Promise((resolve) => setTimeout(resolve, POLL_MIN_INTERVAL_MS));
        }
      }
    }

    /**
     * Sends one long-poll and delivers its events. Resolves to `{ ok: true }`,
     * or `{ ok: false, error, retryAfterMs }`, and never rejects.
     */
    async pollOnce(generation, timeoutSeconds) {
      const url = this.url({ format: "json", since: this.cursor, timeout: String(timeoutSeconds) });
      const controller = new AbortController();
      this.abortController = controller;
      const stallTimer = setTimeout(() => controller.abort(), timeoutSeconds * 1000 + POLL_STALL_MARGIN_MS);
      try {
        // No custom header, so a cross-origin poll is a simple request with no preflight.
        const response = await fetch(url, { cache: "no-store", signal: controller.signal });
        if (generation !== this.generation) return { ok: true };
        return await this.handlePollResponse(generation, response);
      } catch (error) {
        const stalled = controller.signal.aborted && generation === this.generation;
        const message = stalled ? "long-poll timed out with no response" : "request failed: " + error.message;
        return { ok: false, error: new NotifyError(message, null, this.transport) };
      } finally {
        clearTimeout(stallTimer);
        if (this.abortController === controller) this.abortController = null;
      }
    }

    async handlePollResponse(generation, response) {
      if (response.status === 204) {
        // A timeout: the relay sends the cursor it has reached, which covers
        // every event of these inboxes so far.
        const cursor = response.headers.get("Notify-Cursor");
        if (cursor) this.cursor = cursor;
        return { ok: true, empty: true };
      }
      if (response.status !== 200) {
        // The relay explains an error in one line of plain text; a proxy's HTML page is left out.
        const plain = (response.headers.get("Content-Type") || "").startsWith("text/plain");
        const text = plain ? (await response.text().catch(() => "")).trim().slice(0, 200) : "";
        const error = new NotifyError(
          "relay returned HTTP " + response.status + (text ? ": " + text : ""),
          response.status,
          this.transport,
        );
        // 429 and 503 carry Retry-After in seconds, which sets the least delay.
        const retryAfter = Number(response.headers.get("Retry-After"));
        return { ok: false, error: error, retryAfterMs: retryAfter > 0 ? retryAfter * 1000 : 0 };
      }

      const text = await response.text();
      // close() or a hidden page may have ended this poll while the body was read.
      if (generation !== this.generation) return { ok: true };
      const body = parseJSON(text);
      if (body === null || typeof body.cursor !== "string" || !Array.isArray(body.messages)) {
        return { ok: false, error: new NotifyError("relay returned JSON without cursor or messages", 200, this.transport) };
      }
      this.cursor = body.cursor;
      if (body.gap) {
        this.call(this.settings.onGap, { cursor: body.cursor, inboxes: body.inboxes || [body.inbox] });
      }
      for (const message of body.messages) {
        this.call(this.settings.onMail, message);
      }
      return { ok: true };
    }

    // MARK: Helpers

    /** Builds the URL of a request, leaving out parameters whose value is null. */
    url(parameters) {
      const query = new URLSearchParams();
      let path;
      if (this.settings.multi) {
        path = "/";
        for (const name of this.settings.names) query.append("inbox", name);
      } else {
        path = "/" + encodeURIComponent(this.settings.names[0]);
      }
      for (const [name, value] of Object.entries(parameters)) {
        if (value !== null && value !== undefined) query.append(name, value);
      }
      return this.settings.baseUrl + path + "?" + query.toString();
    }

    report(state, details) {
      const status = Object.assign({ state: state, transport: this.transport }, details || {});
      this.call(this.settings.onStatus, status);
    }

    /** Runs a page callback; an exception in it is reported but never stops the subscription. */
    call(callback, argument) {
      try {
        callback(argument);
      } catch (error) {
        if (typeof root.reportError === "function") {
          root.reportError(error);
        } else {
          setTimeout(() => {
            throw error;
          });
        }
      }
    }
  }

  /** Error passed to `onError`. `status` is the HTTP status when the relay sent a response. */
  class NotifyError extends Error {
    constructor(message, status, transport) {
      super("notify: " + message);
      this.name = "NotifyError";
      this.status = status;
      this.transport = transport;
      this.retryInMs = null;
    }
  }

  /** Parses JSON text, or returns null when it is invalid. */
  function parseJSON(text) {
    try {
      return JSON.parse(text);
    } catch (error) {
      return null;
    }
  }

  root.Notify = Object.freeze({ subscribe: subscribe, NotifyError: NotifyError });
})(globalThis);
