/**
 * How long a node's pools keep an idle connection (pg-pool's `idleTimeoutMillis`; its
 * default is 10 s). With 10 s, a node at a few entries a second kept closing the
 * connections a burst had opened and opening them again at the next burst, each a backend
 * start and a SCRAM exchange on both sides: on a 3-node cluster, 12 new sessions a minute
 * at 10 entries/s and 4.5 idle; with five minutes, 3 and 0 (a temporary count of
 * pg_stat_database.sessions, 2026-12-07; the CPU saved was inside the run's noise). A pool
 * holds at most its `max` connections (14 a node), so keeping them costs the server little.
 */
export const POOL_IDLE_TIMEOUT_MS = 5 * 60_000;
