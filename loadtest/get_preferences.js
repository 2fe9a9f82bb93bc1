// GET /api/v1/users/me/preferences: every preference of a random user.
import { http, API, scenarioOptions, randomUser, params, ok } from './lib.js';

export const options = scenarioOptions({ profile: 'profile' });

export default function () {
  ok(http.get(`${API}/me/preferences`, params(randomUser(), 'profile')), 200);
}
