// GET /api/v1/users?search=…: the admin search, from PostgreSQL (with its short
// Redis cache). Terms are fragments of the seeded names, with a few filters and
// sort orders, so the cache sees many distinct queries.
import { http, API, scenarioOptions, params, ok } from './lib.js';
import { searchQuery, randomAdmin } from './lib.js';

export const options = scenarioOptions({ search: 'search' });

export default function () {
  ok(http.get(`${API}?${searchQuery()}`, params(randomAdmin(), 'search')), 200);
}
