// What bench/run.ts and bench/gateway-process.ts agree on (kept free of side effects so both can import it).

import type { DeepPartial } from '../src/config/load.js';
import type { Config } from '../src/config/types.js';

/** Environment variable carrying the JSON spec (kept out of argv so the password does not show in ps). */
export const SPEC_ENV = 'SWITCHYARD_BENCH_GATEWAY';
/** `READY_MARK {"port":N,"pid":P}` on stdout once the gateway listens. */
export const READY_MARK = 'SWITCHYARD_BENCH_READY';
/** `ERROR_MARK <message>` on stdout when the gateway could not start. */
export const ERROR_MARK = 'SWITCHYARD_BENCH_ERROR';

export interface GatewayProcessSpec {
  primary: { host: string; port: number };
  superuser: string;
  superuserPassword: string;
  overrides?: DeepPartial<Config>;
}
