// TypeScript declarations for notify.js and notify.mjs, the browser client of
// notify-relay.
//
// notify.js is a classic script: a <script src> tag, or an ES module's
// `import "/static/notify.js"`, defines `globalThis.Notify`, declared below.
// notify.mjs re-exports the same `subscribe` and `NotifyError` as named
// exports, which this file also declares. Put this file beside the script you
// import, named notify.d.ts for notify.js or notify.d.mts for notify.mjs, or
// reference it with `/// <reference path="notify.d.ts" />` for the global.

/** One new mail, as the relay sends it. Every string comes from the mail's sender: insert it as text, never as HTML. */
export interface MailEvent {
  /** The event's cursor, unique within one run of the relay. */
  id: string;
  /** Inbox key the mail was delivered to, as the relay normalised it. */
  inbox: string;
  /** Recipient address as notify-deliver reported it. */
  recipient: string;
  /** The From header field, decoded. Absent when the mail had none. */
  from?: string;
  /** The Subject header field, decoded. Absent when the mail had none. */
  subject?: string;
  /** The Message-ID header field, with its angle brackets. Absent when the mail had none. */
  messageId?: string;
  /** Message size in bytes, header and body. Absent when notify-deliver did not count it. */
  size?: number;
  /** When the relay received the event, in RFC 3339 UTC (`2026-12-04T19:00:00Z`). */
  receivedAt: string;
}

/** Notice that events may have been missed, so the page should reload its mail list. */
export interface GapInfo {
  /** Cursor the client resumes from. */
  cursor: string;
  /** Inbox keys whose events may be missing. */
  inboxes: string[];
}

/** Connection states reported to `onStatus`. */
export type ConnectionState =
  /** First connection, or after the page shows again. */
  | "connecting"
  /** Connected: events arrive as they happen. */
  | "open"
  /** An event stream ended normally and is being reopened. */
  | "reconnecting"
  /** A connection failed, and the next try starts after `retryInMs`. */
  | "waiting"
  /** The page is hidden, so no connection is open. */
  | "paused"
  /** `close()` was called, or the relay rejected the request with HTTP 400. */
  | "closed";

/** Argument of `onStatus`. */
export interface ConnectionStatus {
  state: ConnectionState;
  /** The transport in use. "sse" may change to "longpoll" once, never back. */
  transport: "sse" | "longpoll";
  /** Delay before the next try, in milliseconds. Only for "waiting". */
  retryInMs?: number;
  /** The failure. Only for "waiting", and for "closed" when the relay rejected the request. */
  error?: NotifyError;
}

/** Error passed to `onError`. */
export declare class NotifyError extends Error {
  /** HTTP status of the relay's response, or null for network failures and failed event streams. */
  status: number | null;
  /** Transport that failed. */
  transport: "sse" | "longpoll";
  /** Delay before the next try, in milliseconds, or null when the client stopped (HTTP 400). */
  retryInMs: number | null;
}

export interface SubscribeOptions {
  /**
   * Relay URL with no trailing path, such as `https://notify.example` or
   * `https://mail.example/notify` behind a proxy. Default: the page's origin.
   * Another origin must be allowed with the relay's --cors-origin.
   */
  baseUrl?: string;
  /** Called once per new mail, in cursor order. */
  onMail?: (message: MailEvent) => void;
  /** Called when the relay no longer stores the events after the cursor, for example after a relay restart. */
  onGap?: (info: GapInfo) => void;
  /** Called on each failed connection. The client retries with backoff (1 s doubling to 30 s, with jitter). */
  onError?: (error: NotifyError) => void;
  /** Called whenever the connection state changes. */
  onStatus?: (status: ConnectionStatus) => void;
  /** Cursor to resume from, such as a saved `handle.cursor`. Default: only mail that arrives from now on. */
  cursor?: string;
  /** "auto" (default) prefers an event stream and falls back to long-poll; the others force one. */
  transport?: "auto" | "sse" | "longpoll";
  /** Close the connection while `document.hidden` and resume from the cursor when visible. Default true. */
  pauseWhenHidden?: boolean;
}

/** Handle returned by `subscribe`. */
export interface Subscription {
  /** Stops the subscription; no callback runs after it returns. */
  close(): void;
  /** Cursor of the last event or timeout seen, or null before the first response. */
  readonly cursor: string | null;
  /** Transport in use now. */
  readonly transport: "sse" | "longpoll";
}

/**
 * Subscribes to one inbox (a string) or several (an array, one request for
 * all) and calls `onMail` once per new mail, across reconnects.
 * Throws TypeError for an empty or non-string inbox name or an unknown transport.
 */
export declare function subscribe(inboxes: string | string[], options?: SubscribeOptions): Subscription;

declare global {
  /** Defined by loading notify.js. */
  var Notify: {
    readonly subscribe: typeof subscribe;
    readonly NotifyError: typeof NotifyError;
  };
}
