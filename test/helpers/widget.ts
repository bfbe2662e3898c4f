import { jsonCodec, type Spoolable } from "../../src/spool/index.js";

/** The spool description most tests use (like Multispool's test widget). */
export interface Widget {
  id: number;
  note?: string;
}

export const WIDGET_QUEUES = ["inbox", "outbox", "dead"] as const;
export type WidgetQueue = (typeof WIDGET_QUEUES)[number];

export function widgetSpoolable(
  overrides: Partial<Spoolable<Widget, WidgetQueue>> = {},
): Spoolable<Widget, WidgetQueue> {
  return {
    metadata: jsonCodec<Widget>(),
    queues: WIDGET_QUEUES,
    ...overrides,
  };
}
