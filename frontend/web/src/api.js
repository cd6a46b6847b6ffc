/**
 * The JSON-RPC 2.0 client: every request the app makes to the server goes through `call`.
 *
 * Authentication is the HttpOnly session cookie that `auth.login` sets: the app never sees or
 * stores the token (nothing in localStorage), so a script injected into the page could not
 * steal it either. The server accepts a cookie only on requests whose Origin is its own and
 * whose body is `application/json`, which `fetch` from this page always sends.
 *
 * Errors come back as `RpcError` (the server answered with an error: its code, message and
 * data) or `NetworkError` (no answer: the server is restarting, the network is down).
 */

import { CODES } from "./generated.js";

/** The API's error codes (docs/api.md), as the server defines them (see generated.js). */
export { CODES };

export class RpcError extends Error {
  constructor(code, message, data) {
    super(message);
    this.name = "RpcError";
    this.code = code;
    this.data = data;
  }
}

export class NetworkError extends Error {
  constructor(message) {
    super(message);
    this.name = "NetworkError";
  }
}

let nextId = 1;
const unauthenticatedListeners = new Set();

/**
 * Call `fn(error)` whenever the server says the user is not signed in (the cookie expired, or
 * they logged out in another tab), so the app can show the login page.
 */
export function onUnauthenticated(fn) {
  unauthenticatedListeners.add(fn);
  return () => unauthenticatedListeners.delete(fn);
}

/** Call API method `method` with named `params`; resolves to its result. */
export async function call(method, params = {}) {
  const body = JSON.stringify({ jsonrpc: "2.0", id: nextId++, method, params });
  let response;
  try {
    response = await fetch("/rpc", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      credentials: "same-origin",
      body,
    });
  } catch (error) {
    throw new NetworkError(`the server did not answer (${error.message})`);
  }
  let reply;
  try {
    reply = await response.json();
  } catch {
    throw new NetworkError(`the server answered HTTP ${response.status} without JSON`);
  }
  if (reply.error) {
    const { code, message, data } = reply.error;
    const error = new RpcError(code, message, data);
    if (code === CODES.UNAUTHENTICATED && method !== "auth.login") {
      for (const fn of unauthenticatedListeners) fn(error);
    }
    throw error;
  }
  return reply.result;
}

/** A message for people about any error `call` may throw. */
export function describeError(error) {
  if (error instanceof RpcError || error instanceof NetworkError) return error.message;
  return `something went wrong: ${error?.message ?? error}`;
}
