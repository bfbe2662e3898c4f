import { type FileHandle, rename } from "node:fs/promises";
import type { SpoolCore } from "./core.js";
import { type DataSource, writeData } from "./data.js";
import { ioError, SpoolError, SpoolErrorCode } from "./errors.js";
import { statIfExists, unlinkIfExists } from "./fs-ops.js";
import { validateName } from "./names.js";

/**
 * Metadata made once the data is written (and so its size and any digest computed while
 * streaming are known). If `make` throws, the enqueue fails and leaves nothing behind.
 * @internal
 */
export class DeferredMetadata<M> {
  constructor(readonly make: (written: { size: number }) => M | Promise<M>) {}
}

/**
 * Data first (write, fsync), then metadata to .tmp (write, fsync), then make the registry
 * and data directory entries durable, then rename the metadata into the queue and fsync
 * the queue directory. Any failure removes every file this call made, registry last.
 * Returns the entry's name.
 * @internal
 */
export async function enqueue<M, Q extends string>(
  core: SpoolCore<M, Q>,
  queue: Q,
  metadata: M | DeferredMetadata<M>,
  data: DataSource,
  reserved?: string,
  onVisible?: (name: string) => void,
): Promise<string> {
  const dirname = core.dirname(queue);
  const deferred = metadata instanceof DeferredMetadata ? metadata : undefined;
  let bytes = deferred ? undefined : core.encodeFile(metadata as M, { attempts: 0 });
  let name: string;
  // Whether this call made the data file. A failure removes only what this call made:
  // never the files of a live entry (or of another enqueue) that already uses the name.
  let madeData = false;
  if (reserved === undefined) {
    name = await core.reserveName();
  } else {
    name = validateName("entry", reserved);
    const reg = await core.throttle.run(() => statIfExists(core.layout.registryFile(name)));
    if (reg === undefined) {
      throw new SpoolError(
        SpoolErrorCode.EntryNotFound,
        `entry name ${name} was not reserved in this spool`,
      );
    }
  }
  const tmp = core.layout.tmpFile(name);
  const dataPath = core.layout.dataFile(name);
  const queueFile = core.layout.queueFile(dirname, name);
  const queueDir = core.layout.queue(dirname);
  let step = "write data";
  let visible = false;
  const open: FileHandle[] = [];
  try {
    // Write data and metadata, then make both files and the .registry and .data
    // directory entries durable in one parallel round (two rounds of fsync in all, with
    // the queue directory's after the rename), rather than one after another.
    // O_EXCL: a data file already there means the name is in use (or a dead attempt's).
    const written = await writeData(dataPath, data, {
      exclusive: true,
      throttle: core.throttle,
      onCreated: () => {
        madeData = true;
      },
    });
    open.push(written.fh);
    step = "write metadata";
    if (deferred) {
      bytes = core.encodeFile(await deferred.make({ size: written.size }), { attempts: 0 });
    }
    const metadataBytes = bytes as Buffer;
    const meta = await core.throttle.run(() => writeData(tmp, metadataBytes));
    open.push(meta.fh);
    step = "fsync";
    await Promise.all([
      core.throttle.run(() => written.fh.sync()),
      core.throttle.run(() => meta.fh.sync()),
      core.syncer.sync(core.layout.registry),
      core.syncer.sync(core.layout.data),
    ]);
    // A repair that judged a stalled upload abandoned (registry and data older than the
    // tmp age limit) may have unlinked them under us: never make such an entry visible.
    const [dataStat, reg] = await Promise.all([
      core.throttle.run(() => written.fh.stat()),
      core.throttle.run(() => statIfExists(core.layout.registryFile(name))),
    ]);
    if (dataStat.nlink === 0 || reg === undefined) {
      throw new SpoolError(
        SpoolErrorCode.EntryNotFound,
        `entry ${name} was removed while it was being written (an upload stalled past the tmp age limit?)`,
      );
    }
    const toClose = [...open];
    open.length = 0;
    for (const fh of toClose) await fh.close().catch(() => undefined);
    step = "rename into queue";
    await core.throttle.run(() => rename(tmp, queueFile));
    visible = true;
    onVisible?.(name);
    step = "fsync queue";
    await core.syncer.sync(queueDir);
    return name;
  } catch (err) {
    for (const fh of open) await fh.close().catch(() => undefined);
    // Once visible, the entry may already be someone's: never take it back. The caller
    // learns that its last fsync failed.
    if (visible) throw ioError(`enqueue (${step}) of`, name, err);
    // The data file was made with O_EXCL, so making it proves the name was free: only
    // then are its .tmp file and a caller's reservation ours to remove. The queue file is
    // never ours here (its rename is what makes the entry visible).
    const registry = core.layout.registryFile(name);
    const ours = madeData ? [tmp, dataPath, registry] : reserved === undefined ? [registry] : [];
    await core.throttle.run(async () => {
      for (const p of ours) await unlinkIfExists(p).catch(() => false);
    });
    throw ioError(`enqueue (${step}) of`, name, err);
  }
}
