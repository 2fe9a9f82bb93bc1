// PUT /api/v1/users/me/preferences/ui: upsert two keys of one category.
import { http, API, scenarioOptions, randomUser, params, ok } from './lib.js';

export const options = scenarioOptions({ profile: 'profile' });

const themes = ['light', 'dark', 'system'];

export default function () {
  const body = JSON.stringify({
    preferences: [
      { key: 'theme', value: themes[Math.floor(Math.random() * themes.length)] },
      { key: 'items_per_page', value: 10 + Math.floor(Math.random() * 5) * 10 },
    ],
  });
  ok(http.put(`${API}/me/preferences/ui`, body, params(randomUser(), 'profile')), 200);
}
