import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ConfigError } from "../../src/node/config/index.js";

/** The environment that names a node and its spool, which every config needs. */
export const BASE_ENV = { GEOSPOOL_NODE__ID: "n1", GEOSPOOL_SPOOL__DIR: "/var/spool/geospool" };

/** Write `text` as a YAML file in `dir` and return its path. */
export async function writeYamlIn(dir: string, text: string, name = "node.yaml"): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, text);
  return file;
}

/** The ConfigError thrown by `fn` (fails the test if nothing or something else is thrown). */
export function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error("expected a ConfigError, got a config");
}
