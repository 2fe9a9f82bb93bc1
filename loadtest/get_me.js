// GET /api/v1/users/me for a random seeded user: the hot read path (a live actor,
// no PostgreSQL, no Redis). With MODE=warmup it visits every user once instead,
// which activates every actor before the measured runs.
import { scenarioOptions, randomUser, warmupUser, isWarmup, getMe } from './lib.js';

export const options = scenarioOptions({ profile: 'profile' });

export default function () {
  getMe(isWarmup ? warmupUser() : randomUser());
}
