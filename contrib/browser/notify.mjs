// notify.mjs: ES module form of notify.js for pages that want a named import:
//
//   import { subscribe } from "/static/notify.mjs";
//
// It loads notify.js from the same folder for its side effect (which defines
// globalThis.Notify) and re-exports what that defines, so both forms share one
// implementation. Importing it from another origin needs --cors-origin on the
// relay, because browsers fetch module scripts in CORS mode.

import "./notify.js";

/** See `subscribe` in notify.d.ts. */
export const subscribe = globalThis.Notify.subscribe;

/** The class of the errors passed to `onError`. */
export const NotifyError = globalThis.Notify.NotifyError;
