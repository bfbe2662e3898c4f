import { randomBytes } from "node:crypto";
import { open, rename, rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import {
  checkKeyName,
  formatNixPublicKey,
  formatNixSecretKey,
  generateNixKey,
} from "../../../cache/nix-key.js";
import { parseCommand } from "../args.js";
import { CliError, usageError } from "../cli-error.js";
import type { Command } from "../command.js";
import { ExitCode } from "../exit-codes.js";
import { Output } from "../output.js";

const PATH = "geospool cache keygen";

/**
 * Write `text` to `path` durably with `mode`: a new file only (O_EXCL) unless `replace`,
 * in which case through a temporary file renamed over it.
 */
async function writeKeyFile(
  path: string,
  text: string,
  mode: number,
  replace: boolean,
): Promise<void> {
  const target = replace ? `${path}.tmp-${randomBytes(6).toString("hex")}` : path;
  const file = await open(target, "wx", mode);
  try {
    await file.writeFile(text);
    await file.sync();
  } catch (err) {
    await file.close();
    await rm(target, { force: true });
    throw err;
  }
  await file.close();
  if (replace) await rename(target, path);
}

export const cacheKeygen: Command = {
  name: "keygen",
  summary: "make a Nix signing key pair (NAME.secret, NAME.public)",
  async run(args, io) {
    const parsed = await parseCommand(
      args,
      {
        path: PATH,
        help: `Usage: ${PATH} NAME [--dir DIR] [--secret-file FILE] [--public-file FILE] [--force] [--json]

Make an Ed25519 key pair in Nix's format, as 'nix key generate-secret --key-name NAME'
does: the secret key file (mode 0600) holds NAME:<base64 seed and public key>, the
public key file NAME:<base64 public key>. Give the secret to a node (or to
'nix copy --to ... --secret-key-files'); give the public key to clients as a
trusted-public-keys entry. NAME is usually a host name and a number, like
cache.example.org-1; it appears in every signature. Existing files are never
overwritten without --force.

Options:
  --dir DIR            where to write NAME.secret and NAME.public (default: .)
  --secret-file FILE   the secret key's path instead (default: DIR/NAME.secret)
  --public-file FILE   the public key's path instead (default: DIR/NAME.public)
  --force              replace existing key files
  --json               print {name, secretKeyFile, publicKeyFile, publicKey}`,
        options: {
          dir: { type: "string" },
          "secret-file": { type: "string" },
          "public-file": { type: "string" },
          force: { type: "boolean" },
          json: { type: "boolean" },
        },
        positionals: ["NAME"],
      },
      io,
    );
    if (!parsed) return 0;
    const [name] = parsed.positionals as [string];
    const { values } = parsed;
    const problem = checkKeyName(name);
    if (problem !== undefined)
      throw usageError(`cache keygen: NAME ${JSON.stringify(name)}: ${problem}`);
    const dir = values.dir ?? ".";
    const secretFile = resolve(values["secret-file"] ?? join(dir, `${name}.secret`));
    const publicFile = resolve(values["public-file"] ?? join(dir, `${name}.public`));
    if (secretFile === publicFile)
      throw usageError("cache keygen: the secret and public key files must differ");
    const key = generateNixKey(name);
    const publicKey = formatNixPublicKey(key.publicKey);
    const force = values.force === true;
    try {
      await writeKeyFile(secretFile, formatNixSecretKey(key), 0o600, force);
    } catch (err) {
      throw existsError(err, secretFile);
    }
    try {
      await writeKeyFile(publicFile, `${publicKey}\n`, 0o644, force);
    } catch (err) {
      if (!force) await rm(secretFile, { force: true });
      throw existsError(err, publicFile);
    }
    await new Output(io, values.json === true).result(
      [`secret key: ${secretFile} (keep it private)`, `public key: ${publicFile}`, publicKey],
      { name, secretKeyFile: secretFile, publicKeyFile: publicFile, publicKey },
    );
    return 0;
  },
};

function existsError(err: unknown, path: string): unknown {
  const code = (err as { code?: unknown }).code;
  if (code !== "EEXIST") return err;
  return new CliError(
    "exists",
    `cache keygen: ${path} exists (use --force to replace it)`,
    ExitCode.Failure,
    { cause: err },
  );
}
