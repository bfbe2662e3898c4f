import { commandGroup } from "../command.js";
import { cacheKeygen } from "./keygen.js";

/** `geospool cache <command>`: the binary cache's keys (and, to come, its contents). */
export const cacheCommand = commandGroup({
  name: "cache",
  path: "geospool cache",
  summary: "the Nix/Guix binary cache: signing keys",
  commands: [cacheKeygen],
  epilogue: `With --json, results are JSON on standard output, and errors are also printed on
standard error as {"error":{"code","message"}}.`,
});
