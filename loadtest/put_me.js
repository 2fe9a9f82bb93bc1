// PUT /api/v1/users/me: a profile write, group-committed with its user.updated
// outbox row before the 200.
import { http, API, scenarioOptions, randomUser, params, ok } from './lib.js';

export const options = scenarioOptions({ profile: 'profile' });

export default function () {
  const body = JSON.stringify({ bio: `Load test bio ${Math.random().toString(36).slice(2)}` });
  ok(http.put(`${API}/me`, body, params(randomUser(), 'profile')), 200);
}
