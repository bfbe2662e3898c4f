import {
  DEFAULT_MAX_CHECKED_OUT_AGE_MS,
  DEFAULT_MAX_TMP_FILE_AGE_MS,
  type Limits,
} from "../../../spool/index.js";
import type { JsonSpool } from "../../spool-description.js";
import { usageError } from "../cli-error.js";
import { formatDuration, parseDuration } from "../duration.js";
import { requireQueue } from "./views.js";

/** The fsck limit flags shared by `fsck` and `monitor`. */
export const LIMIT_OPTIONS = {
  "max-tmp-age": { type: "string" },
  "max-checkout-age": { type: "string" },
  "max-age": { type: "string", multiple: true },
} as const;

export const LIMITS_HELP = `  --max-tmp-age DUR        a tmp file older than this is a problem (and, with --repair,
                           abandoned) (default ${formatDuration(DEFAULT_MAX_TMP_FILE_AGE_MS)})
  --max-checkout-age DUR   a checkout held longer than this is a problem (default ${formatDuration(DEFAULT_MAX_CHECKED_OUT_AGE_MS)})
  --max-age QUEUE=DUR      an entry waiting in QUEUE longer than DUR is a problem
                           (repeatable; default: no limit)`;

export function parseLimits(
  spool: JsonSpool,
  values: { "max-tmp-age"?: string; "max-checkout-age"?: string; "max-age"?: string[] },
): Partial<Limits<string>> {
  const limits: Partial<Limits<string>> = {};
  if (values["max-tmp-age"] !== undefined) {
    limits.maxTmpFileAgeMs = parseDuration("--max-tmp-age", values["max-tmp-age"]);
  }
  if (values["max-checkout-age"] !== undefined) {
    limits.maxCheckedOutAgeMs = parseDuration("--max-checkout-age", values["max-checkout-age"]);
  }
  const ages: Record<string, number> = {};
  for (const item of values["max-age"] ?? []) {
    const eq = item.indexOf("=");
    if (eq < 0) throw usageError(`--max-age: expected QUEUE=DURATION, got ${JSON.stringify(item)}`);
    const queue = requireQueue(spool, item.slice(0, eq), "--max-age");
    ages[queue] = parseDuration("--max-age", item.slice(eq + 1));
  }
  limits.maxQueueAgesMs = ages;
  return limits;
}
