/**
 * A CPU profile of the current process over a chosen interval (node:inspector), so that
 * `bench:grpc --profile DIR` profiles the measuring windows only, not start-up.
 */
import { writeFile } from "node:fs/promises";
import { Session } from "node:inspector/promises";

export class WindowProfiler {
  private readonly session = new Session();
  private running = false;

  constructor() {
    this.session.connect();
  }

  async start(): Promise<void> {
    await this.session.post("Profiler.enable");
    await this.session.post("Profiler.setSamplingInterval", { interval: 500 });
    await this.session.post("Profiler.start");
    this.running = true;
  }

  /** Stop and write the profile to `file` (a .cpuprofile, for Chrome DevTools or summary). */
  async stop(file: string): Promise<void> {
    if (!this.running) return;
    this.running = false;
    const { profile } = await this.session.post("Profiler.stop");
    await writeFile(file, JSON.stringify(profile));
  }

  close(): void {
    this.session.disconnect();
  }
}
