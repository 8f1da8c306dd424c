// Shared by the hub's pages: the signed-in token, REST calls, and the socket connection.
'use strict';

const Hub = (() => {
  const store = window.sessionStorage;
  const listeners = new Set();
  // Requests made with the stored token, so that logging out can let them finish first:
  // one that reached the server after the session ended would fail with a 401 nobody caused.
  const inFlight = new Set();
  let signingOut = false;

  function tokens() {
    return { access: store.getItem('hub.access'), refresh: store.getItem('hub.refresh') };
  }

  function setTokens(access, refresh) {
    if (access) store.setItem('hub.access', access); else store.removeItem('hub.access');
    if (refresh !== undefined) {
      if (refresh) store.setItem('hub.refresh', refresh); else store.removeItem('hub.refresh');
    }
    showIdentity();
    listeners.forEach((fn) => fn(tokens()));
  }

  function claims(token) {
    try {
      return JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
    } catch (err) {
      return null;
    }
  }

  function showIdentity() {
    const who = document.getElementById('whoami');
    const access = tokens().access;
    const c = access && claims(access);
    who.textContent = c ? `user ${c.sub}${c.role === 'admin' ? ' (admin)' : ''}` : 'not signed in';
  }

  function api(method, path, body, token) {
    if (!token && signingOut) {
      const refused = new Error('Signing out: the request was not sent');
      refused.signedOut = true;
      return Promise.reject(refused);
    }
    const request = send(method, path, body, token || tokens().access);
    if (!token) {
      inFlight.add(request);
      request.catch(() => {}).finally(() => inFlight.delete(request));
    }
    return request;
  }

  async function send(method, path, body, bearer) {
    const headers = { Accept: 'application/json' };
    if (bearer) headers.Authorization = `Bearer ${bearer}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      const error = (data && data.error) || { code: 'http_error', message: response.statusText };
      const failure = new Error(`${response.status} ${error.code}: ${error.message}`);
      failure.status = response.status;
      failure.details = error.details;
      throw failure;
    }
    return data;
  }

  async function login(email, password) {
    const body = await api('POST', '/api/auth/login', { email, password }, null);
    setTokens(body.accessToken, body.refreshToken);
    return body;
  }

  async function refresh() {
    const { refresh: refreshToken } = tokens();
    if (!refreshToken) throw new Error('No refresh token: log in with a password to get one');
    const body = await api('POST', '/api/auth/refresh', undefined, refreshToken);
    store.setItem('hub.access', body.accessToken);
    showIdentity();
    return body.accessToken;
  }

  // Ends the session on the server (the refresh token and every access token of the
  // session), then forgets the tokens here. A 401 means the token is already dead.
  async function logout() {
    const { access, refresh: refreshToken } = tokens();
    signingOut = true;
    try {
      await Promise.allSettled([...inFlight]);
      for (const token of [refreshToken, access].filter(Boolean)) {
        try {
          await api('POST', '/api/auth/logout', undefined, token);
          return;
        } catch (err) {
          if (err.status !== 401) throw err;
        }
      }
    } finally {
      signingOut = false;
      setTokens(null, null);
    }
  }

  // Shows a failed request beside the login panel; one refused because the user is
  // signing out is not a failure worth showing.
  function showError(err) {
    if (!err.signedOut) document.getElementById('login-error').textContent = err.message;
  }

  function connect() {
    return io(window.location.origin, {
      auth: (cb) => cb({ token: tokens().access }),
      transports: ['websocket'],
    });
  }

  function wireLoginPanel() {
    const error = document.getElementById('login-error');
    document.getElementById('login-btn').addEventListener('click', async () => {
      error.textContent = '';
      try {
        await login(document.getElementById('email').value,
          document.getElementById('password').value);
      } catch (err) {
        error.textContent = err.message;
      }
    });
    document.getElementById('use-token-btn').addEventListener('click', () => {
      error.textContent = '';
      const value = document.getElementById('token').value.trim();
      if (!claims(value)) { error.textContent = 'That does not look like a JWT'; return; }
      setTokens(value, null);
    });
    document.getElementById('logout-btn').addEventListener('click', async () => {
      error.textContent = '';
      try {
        await logout();
      } catch (err) {
        error.textContent = `Signed out here, but the server could not end the session: ${err.message}`;
      }
    });
    showIdentity();
  }

  document.addEventListener('DOMContentLoaded', wireLoginPanel);

  return {
    api, login, logout, refresh, connect, tokens, claims, showError,
    onTokens: (fn) => listeners.add(fn),
  };
})();
