import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";

declare module "vitest" {
  export interface ProvidedContext {
    /** A directory the integration files of one run share (removed after the run). */
    geospoolSuiteDir: string;
  }
}

/**
 * globalSetup of the integration project: one directory for what its files can share (the
 * CLI build, see cli-build.ts), removed when the run ends.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dir = await mkdtemp(join(tmpdir(), "geospool-suite-"));
  project.provide("geospoolSuiteDir", dir);
  return () => rm(dir, { recursive: true, force: true });
}
