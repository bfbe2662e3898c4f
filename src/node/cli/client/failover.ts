import { isRetryableStatus } from "../../../common/grpc-status.js";
import { sleep } from "../../../common/sleep.js";
import { Backoff } from "../../client/backoff.js";
import { ClientError } from "../../client/geospool-client.js";

/**
 * Try `attempt` on each endpoint in turn until one succeeds, a failure is not retryable,
 * or `retryForMs` has passed and every endpoint has been tried at least once; capped
 * backoff after each full round. For calls GeospoolClient does not fail over by itself
 * (streamed uploads and Watch): `attempt` gets a one-try client per endpoint.
 */
export async function acrossEndpoints<T>(
  endpoints: readonly string[],
  retryForMs: number,
  attempt: (endpoint: string) => Promise<T>,
  onRetry?: (endpoint: string, err: ClientError) => void,
): Promise<T> {
  const backoff = new Backoff(50, 2_000);
  const giveUpAt = Date.now() + retryForMs;
  for (let tried = 0; ; ) {
    const endpoint = endpoints[tried % endpoints.length] as string;
    try {
      return await attempt(endpoint);
    } catch (err) {
      tried++;
      const retryable = err instanceof ClientError && isRetryableStatus(err.code);
      if (!retryable || (Date.now() >= giveUpAt && tried >= endpoints.length)) throw err;
      onRetry?.(endpoint, err);
      if (tried % endpoints.length === 0) {
        await sleep(Math.min(backoff.next(), Math.max(0, giveUpAt - Date.now())));
      }
    }
  }
}
