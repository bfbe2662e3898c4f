import { exclusive } from "../args.js";
import { usageError } from "../cli-error.js";
import type { CliIo } from "../command.js";
import { requireEndpoint } from "./settings.js";
import type { ClientContext } from "./subcommand.js";
import { type LeaseRef, parseLeaseJson } from "./views.js";

/** The flags that name a lease, shared by complete, release and extend. */
export const LEASE_OPTIONS = {
  "lease-token": { type: "string" },
  endpoint: { type: "string" },
  "lease-json": { type: "string" },
  json: { type: "boolean" },
} as const;

export const LEASE_HELP = `A lease is named by QUEUE NAME --lease-token TOKEN --endpoint HOST:PORT (the node that
holds it: calls on a lease go to that node only), or all at once by --lease-json:
  --lease-token TOKEN   the lease token printed by dequeue
  --endpoint HOST:PORT  the node that holds the lease, as printed by dequeue (may be left
                        out when exactly one endpoint is configured)
  --lease-json JSON     the JSON object printed by 'dequeue --json' (instead of QUEUE NAME,
                        --lease-token and --endpoint); '-' reads it from standard input`;

/** QUEUE NAME are required unless --lease-json names the lease. */
export function leasePositionals(args: readonly string[]): readonly string[] {
  const end = args.indexOf("--");
  const head = end < 0 ? args : args.slice(0, end);
  const byJson = head.some((a) => a === "--lease-json" || a.startsWith("--lease-json="));
  return byJson ? [] : ["QUEUE", "NAME"];
}

/** The lease named by the arguments (see LEASE_HELP). */
export async function resolveLease(
  values: { "lease-token"?: string; endpoint?: string; "lease-json"?: string },
  positionals: readonly string[],
  io: CliIo,
  ctx: ClientContext,
): Promise<LeaseRef> {
  const json = values["lease-json"];
  if (json !== undefined) {
    exclusive(values, ["lease-json", "lease-token"]);
    exclusive(values, ["lease-json", "endpoint"]);
    return parseLeaseJson(json === "-" ? await readAll(io.stdin) : json);
  }
  const [queue, name] = positionals as [string, string];
  const token = values["lease-token"];
  if (token === undefined || token === "") {
    throw usageError("--lease-token: required (the token dequeue printed), or use --lease-json");
  }
  let endpoint = values.endpoint;
  if (endpoint === undefined) {
    const configured = ctx.settings().endpoints;
    if (configured.length !== 1) {
      throw usageError(
        "--endpoint: required (the node that holds the lease, as dequeue printed it) unless exactly one endpoint is configured",
      );
    }
    endpoint = configured[0] as string;
  }
  return { queue, name, token, endpoint: requireEndpoint("--endpoint", endpoint) };
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const parts: Buffer[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer | string>) {
    parts.push(typeof chunk === "string" ? Buffer.from(chunk) : chunk);
  }
  return Buffer.concat(parts).toString("utf8").trim();
}
