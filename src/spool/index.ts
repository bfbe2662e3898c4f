// biome-ignore-all assist/source/organizeImports: the exports follow the design, layer by layer
/**
 * # The geospool spool
 *
 * Several independent processes cooperate through one directory, using only atomic
 * filesystem operations, in the manner of Maildir and of Jane Street's Multispool. One or
 * more processes put entries into queues; others wait for entries, take them one at a
 * time, and save them into another queue or remove them. Beyond Multispool, every
 * checkout carries a lease, so an entry held by a process that died comes back.
 *
 * ## On disk
 *
 *     <spool>/.spool-id                 the spool's identity: a random id written when it is made
 *     <spool>/.registry/<name>          the name's reservation, made empty with O_CREAT|O_EXCL;
 *                                       while checked out: "<lease token> <checkout inode>"
 *     <spool>/.tmp/<name>[~tag]         metadata being written (write, fsync, rename into place)
 *     <spool>/.data/<name>              the entry's data (streamed, fsynced)
 *     <spool>/<queue>/<name>            metadata of an entry waiting in <queue>
 *     <spool>/<queue>/.checkout/<name>  metadata of an entry checked out of <queue>;
 *                                       its mtime is the lease deadline
 *     <spool>/.pool/<thread>/<n>        empty files a batch writer thread made ahead
 *                                       (see "The file pool")
 *
 * A metadata file is one JSON header line (`{"v":1,"attempts":N}`) then the user's
 * encoded metadata. Names are `[A-Za-z0-9_][A-Za-z0-9._:@+=-]*`, at most 200 characters,
 * so a name never leaves its directory; `~` marks the spool's own tmp files.
 *
 * ## Promises
 *
 * - `create`/`load` refuse a non-empty directory that is not a spool. A new spool gets its
 *   `.spool-id` (128 random bits, fsynced) before its directories; a spool made before
 *   identities existed gets one at its next load (`identity.made` says which). Wiping a
 *   spool and making it again changes its id: that, not emptiness, tells a lost spool.
 * - `enqueue`: reserve a name (or use one reserved earlier), write the data and fsync it,
 *   write the metadata to .tmp and fsync it, fsync .registry and .data, rename the
 *   metadata into the queue, fsync the queue directory. When it returns, the entry survives
 *   a crash of the process or the machine. When it fails, every file it made is gone, and
 *   only those: an entry exists whole or not at all, and an enqueue given the name of an
 *   entry that exists (or is being enqueued) fails without touching it. A name reserved by
 *   the caller is given back only if the call got as far as making its data file. Directory fsyncs are group-committed across
 *   concurrent operations, each directory kept open between its fsyncs (a kept descriptor is
 *   used only while a stat shows its path still names that directory; `Spool.close` lets go
 *   of them all, and of the spool's threads, as before unmounting its filesystem).
 * - `enqueueBatch` (many small entries, data in memory) keeps every promise of `enqueue`
 *   for each entry, and makes them durable together (group commit). In rounds of up to 512
 *   entries, a thread of the spool's own (`BatchWriter`, synchronous system calls: a few
 *   microseconds of the kernel's time per file instead of a round trip through the event
 *   loop each) makes every entry's registry file (O_EXCL, as `reserveName`), data file
 *   (O_EXCL) and metadata in .tmp, without fsync; then one durability round: the fdatasync
 *   of every one of those files and the fsync of .registry and .data, all issued at once
 *   (the filesystem commits them together: on ext4 one journal commit covers many); then
 *   it checks each data file is still linked and its registry file there (as `enqueue`
 *   does), and removes the files of an entry that failed. Only then is each metadata file
 *   renamed into its queue, and after the last round each queue directory touched is
 *   fsynced once. The batch resolves after that fsync, with one result per entry.
 *   Crash argument: an entry is visible only through its rename, and the rename is issued
 *   only after its data, metadata and directory entries are durable, so a crash at any
 *   point (process or machine) leaves each entry whole or absent: absent means at most a
 *   registry, data and .tmp file in no queue, which fsck reports as orphaned and repair
 *   removes once older than the tmp age limit, as after an interrupted `enqueue`. An entry
 *   reported `ok` had its rename made durable by its queue directory's fsync, so it
 *   survives. Renames that happened before a crash, unacknowledged, may or may not
 *   survive; each one that does is whole. One entry's failure (a name in use, a bad queue
 *   or name, an I/O error on its files) is reported for it alone and leaves nothing of it;
 *   a name taken by another process meanwhile is retried as a single `enqueue`.
 *   An item may carry `visibleIf`, a promise decided beside the write (the node's
 *   idempotency claim): its rename waits for it after the durability round, and a "no"
 *   removes its files instead (`withdrawn`). The crash argument is unchanged: until the
 *   rename the entry is files in no queue, as between any round and its renames. Items
 *   may name themselves with `newNames` and `reserve: true` (the registry file made by the
 *   writer thread, O_EXCL, with the other files); such a name found taken fails its entry.
 * - The file pool. Making a file can cost far more than writing it: on ext4 without a
 *   journal, the inode allocator passes over every inode freed in the last minutes (up to
 *   a whole group, about 0.6 ms of the kernel's time per file here; docs/benchmarks.md).
 *   So the batch writer thread makes empty files ahead, once no request of its own is under
 *   way, in a directory of its own (`.pool/<random>`, at most 48 files: one for each file
 *   it needed since, from the pool or not), and a write takes one by `link(2)` under the
 *   name it needs (the registry file, the data file, the metadata in .tmp), then unlinks it
 *   from the pool. A link fails with EEXIST when the name exists, as O_CREAT|O_EXCL does,
 *   so every promise above holds as stated; the pool file then stays for the next one. A
 *   pool file is a new, empty inode no entry ever had: no reader of an entry can see it
 *   change; a file taken gets fresh times (repair judges age by mtime). The pool's
 *   directory is not fsynced (an extra flush in every durability round cost more than the
 *   pool saved at 10/s, docs/benchmarks.md): a crash may bring back a pool name beside the
 *   file an entry took from it (after the fsck that a filesystem without a journal needs
 *   after a crash, as for a renamed .tmp file, the file then has two links), so only the
 *   thread that made a pool directory takes files from it, and removing a name never
 *   touches the other.
 *   A thread removes the other pool directories unchanged for 10 minutes when it makes
 *   its pool and every 10 minutes after (a directory's removal takes only its names), and
 *   `Spool.close` removes its own. A file system without hard links (EXDEV, EPERM) turns
 *   the pool off. The pool's making runs on the writer thread outside the throttle.
 * - An entry is never visible in a queue without its data: data is durable before the
 *   rename that makes the entry visible, and `remove` unlinks the metadata file first,
 *   then the data, then the registry file.
 * - `checkout` renames `<queue>/<name>` to `<queue>/.checkout/<name>`: exactly one process
 *   wins; the others get `not_found`, never an error. The registry file's mtime is set to
 *   the checkout time and the checkout file's mtime to the lease deadline. Asked to
 *   (`readDataUpTo`), the same step then reads the data file when it is no larger
 *   (`CheckedOutEntry.takeData`): a checked-out entry's data changes only by its holder's
 *   `DataFile.save`, a rename, so the read sees one whole version of it. A data file that
 *   cannot be read then gives no data, not an error: the checkout is made by then.
 * - A checked-out entry is finished by `save(queue)` (new metadata to .tmp and fsynced,
 *   then the checkout taken, the new file renamed over it and into the queue: the entry is
 *   in no queue only between two renames, which `locate` rescans over) or `remove()`, or given back by `release()`. Each
 *   first checks the lease is still ours (before the deadline, and the checkout file is the
 *   same inode we took); if not, it changes nothing and reports `lease_lost`. When a finish
 *   (or a lease expiry, a direct remove, a replica placement or drop) returns, it survives a
 *   crash of the machine: every directory it changed (the queue it went to, the .checkout
 *   or queue it left, and for a remove .data and .registry) has been fsynced, so a finished
 *   entry is never delivered again. These fsyncs are group-committed like enqueue's.
 * - Lease tokens: each checkout gets 128 random bits (`CheckedOutEntry.leaseToken`), written
 *   with the checkout file's inode into the registry file, so another process, or the same
 *   one restarted, can tell its holder (`Expert.checkedOutUnsafe` reads it back; compare with
 *   `leaseTokensEqual`, in constant time). A token never repeats, and counts only for the
 *   inode it was made for, so an earlier holder's token never matches a later checkout;
 *   a replica placement clears it. It is not fsynced, deliberately: the checkout rename is
 *   not fsynced either, so after a machine crash the entry may be back in its queue anyway;
 *   and if the checkout survives but its token does not, the holder's finish reports
 *   `lease_lost` and the entry is delivered again when its lease ends. Nothing is lost or
 *   finished twice; a process crash keeps both (they are in the page cache).
 * - Leases: `expireLeases` (run by queue readers while they wait, by `startLeaseReaper`, and
 *   by the monitor's repair) returns each checkout whose deadline plus grace has passed to
 *   its queue with its failed-delivery count raised by one, or to the dead-letter queue once
 *   the count reaches `maxAttempts`. A reaper takes the checkout by rename, as a finish does
 *   (`<queue>/.checkout/<name>` to `<name>~<tag>`), so of any number of reapers and a late
 *   holder exactly one acts; the others see it gone.
 * - `list(queue)` is sorted by name; the default names sort by creation time, so readers
 *   go first-in first-out. One limit, as in Multispool: a directory listing is not an
 *   atomic snapshot once the directory outgrows one getdents(2) buffer (about 1,000 to
 *   2,000 entries on ext4), so while a large queue is being filled, a listing can hold an
 *   entry and miss an older one that lands in a part of the directory already read; that
 *   older entry is then taken on the next listing, a little out of order. Nothing is lost.
 * - `QueueReader` wakes on filesystem events (one fs.watch/inotify on the queue directory;
 *   polling the directory's stat where events are not available) and re-lists; it clears pending
 *   events *before* listing, so nothing that arrives during a listing is missed.
 * - Every disk operation goes through the spool's one `Throttle`.
 * - `Monitor.fsck` reports entries that are too old, orphaned or duplicated, and expired
 *   leases; `repair` fixes what is safe and reports the rest. fsck walks each directory a
 *   slice at a time and holds one small integer per registry name, not a record per file;
 *   it reads a file's times only where they matter (tmp files, checkouts, queues with an
 *   age limit) and looks again at what it would report missing (the walk is no snapshot).
 *   A `Monitor` whose earlier whole pass saw every directory still (stamps over a second
 *   old) lists again only the tmp, checkout and age-limited queue directories while no
 *   directory changes, and keeps that pass's findings about the rest.
 *
 * ## Replica placement (Expert)
 *
 * For the replicator, which brings an entry to a state folded from a replicated journal
 * whatever its local placement (`Expert.replicaSpool(spool)` is its view of the spool):
 * `inspectReplica(name)` reports `absent`, `in_flux` (a
 * registry file but no metadata file in any queue or checkout: an enqueue, remove or finish
 * under way, or a crash remnant) or `present` with its queue, checkout deadline, attempts
 * and the raw codec bytes of its metadata (never decoded); `inspectMany(names)` does so for
 * a batch, its first look at every entry made by a reader thread of the spool's own with
 * synchronous calls (the same reads in the same order, so the same answers), with the data
 * of the entries asked for; an entry that needs a second look (its registry file changed
 * meanwhile, a checkout whose deadline is not set yet, a read that failed) gets the usual
 * `inspectReplica`. `placeReplica` writes the new
 * file to .tmp (deadline as its mtime, fsync), takes a present entry's metadata file by
 * rename (`<queue>/[.checkout/]<name>` to `<queue>/.checkout/<name>~<tag>`, like a finish
 * but without the holder check, so a local holder then gets `lease_lost`), renames the new
 * file over the taken one and into place, and fsyncs the destination and the
 * directory it left; on failure the taken file goes back. An entry not present is made from `adoptPath` (a complete
 * file on the spool's filesystem, renamed to .data) or from `bytes` (written to .data):
 * registry (reserved first: made, it also tells the entry was absent; a remnant is resumed),
 * data, metadata, one round of fsyncs (metadata, data, registry and data directories), then
 * the rename that makes it visible; on failure before that, the data goes back to
 * `adoptPath` (or, written here, is removed with a registry file it made). `dropReplica`
 * takes and removes a present entry, or removes an `in_flux` remnant's data and registry,
 * and fsyncs the directories it changed.
 *
 * The batch: `placeNew(items)` places many entries the replicator saw absent, each with
 * its data in memory, made durable together as `enqueueBatch` makes new entries. In rounds
 * of up to 512, the batch writer thread reserves each entry's registry file (O_EXCL, as
 * `placeReplica` does first: made, it says the entry is still absent), writes its data file
 * (O_EXCL) and its metadata to `.tmp/<name>~place-<tag>`, then one durability round (every
 * file's fdatasync, the fsync of .registry and .data, all at once) and a check that the data
 * file is still linked and the registry file there; the files of an entry that failed are
 * removed. Then, once the caller's `beforeVisible` (if any) has settled, each metadata
 * file is renamed into its queue, and each queue directory touched is fsynced once; the
 * batch resolves after that, one result per entry. An entry
 * whose name is reserved already (a remnant of an earlier placement, or an entry that
 * arrived since the scan), one the thread could not write, and one to be placed checked
 * out (its file's mtime is the deadline) are placed by `placeReplica`, one at a time, also
 * only once `beforeVisible` has settled.
 * Crash argument, as for `enqueueBatch`: an entry becomes visible only by its rename,
 * issued after its data, metadata, registry and data directory entries are durable, so a
 * crash at any point leaves each entry of the batch whole in its queue or not visible at
 * all. Not visible, it is at most a registry file, a data file and a `.tmp` file: the
 * replicator, which records a placement (`replica_entries`) and acknowledges the peer rows
 * that asked for it only after the batch resolved, syncs the entry again after a restart
 * (the apply stream sends the unacknowledged rows again; the periodic reconcile and the
 * record say the rest), finds it in flux and places it again as the resumed remnant of a
 * placement (`placeReplica` touches the registry file, rewrites the data and metadata);
 * the orphaned `.tmp` file is removed by repair once older than the tmp age limit.
 * Visible but not recorded, its next sync finds the files as the fold asks and records
 * them. A remove that arrives meanwhile drops it whole (`dropReplica`): removes stay final.
 *
 * Both answer `raced` and change nothing when a local operation got there first (the entry
 * was taken since the scan, or a finish is under way); the caller inspects again. Calls for
 * one name must not run concurrently with each other.
 *
 * Expected outcomes (`not_found`, `nothing_available`, `stopped`, `lease_lost`) are values;
 * failures are `SpoolError`s with a stable `code`.
 *
 * ## The API, in layers
 *
 * As in Multispool: the spool (`Spool`, made from a `Spoolable`), its entries (`Entry`,
 * `DataFile`), a checked-out entry (`CheckedOutEntry`), queue readers (`QueueReader`), then,
 * fenced off, `Expert`: what breaks a rule the rest keeps (the `*Unsafe` reads of checkouts
 * another holder owns, and the replica operations above), and last the `Monitor`. Unlike
 * Multispool, checkout is in the safe API: a lease bounds it, so a checkout never strands an
 * entry. The build strips what is tagged internal, so the declarations of the package's
 * `./spool` export hold only what this file exports.
 */

// The spool, and what it is made of.
export {
  type BatchEnqueueOptions,
  type BatchEnqueueResult,
  type CheckoutOptions,
  type CheckoutOutcome,
  type Disposition,
  type EnqueueOptions,
  type EntryHandler,
  type EntryState,
  type FoundEntry,
  Spool,
} from "./spool.js";
export {
  bytesCodec,
  jsonCodec,
  type LeasePolicy,
  type MetadataCodec,
  type Spoolable,
  textCodec,
} from "./spoolable.js";
export {
  lexicographicTimeNames,
  MAX_NAME_LENGTH,
  type NameGenerator,
  nameProblem,
  timeSortableNames,
  validateName,
} from "./names.js";
export { SPOOL_ID_FILE, type SpoolIdentity } from "./identity.js";
export { discoverQueues } from "./discover.js";
export { Semaphore, type Throttle } from "./throttle.js";
export {
  DEFAULT_LEASE_GRACE_MS,
  DEFAULT_LEASE_MS,
  DEFAULT_MAX_ATTEMPTS,
  type ExpiredLease,
  MAX_LEASE_MS,
} from "./core.js";

// An entry in a queue, and its data.
export { DirectEntryOps, Entry } from "./entry.js";
export type { BatchItem } from "./enqueue-batch.js";
export { DataFile, type DataSource } from "./data.js";

// An entry this process holds.
export { CheckedOutEntry, type FinishResult } from "./checked-out-entry.js";
export { leaseTokensEqual } from "./lease-token.js";

// Reading a queue.
export {
  type DequeueAvailableResult,
  type DequeueResult,
  QueueReader,
  type QueueReaderOptions,
} from "./queue-reader.js";
export type { DoorbellMode } from "./doorbell.js";

// Fenced off: the unsafe reads and the replica operations.
export * as Expert from "./expert.js";
export type {
  DropReplicaResult,
  PlaceReplicaResult,
  ReplicaData,
  ReplicaInspection,
  ReplicaPlacement,
} from "./replica.js";
export type { NewReplica, NewReplicaResult, PlaceNewOptions } from "./replica-batch.js";
export type { ReplicaLook } from "./replica-batch-read.js";
export type { ReplicaSpool } from "./replica-spool.js";

// Consistency checks.
export {
  DEFAULT_ALERT_AFTER_CYCLES,
  DEFAULT_CHECK_EVERY_MS,
  DEFAULT_MAX_CHECKED_OUT_AGE_MS,
  DEFAULT_MAX_TMP_FILE_AGE_MS,
  describeProblem,
  dirLabel,
  type FileWithMtime,
  type Limits,
  Monitor,
  type MonitorEvent,
  type Problem,
  problemKey,
  type RepairAction,
  type RepairReport,
  type SpoolDir,
} from "./monitor.js";

// Failures.
export { SpoolError, SpoolErrorCode } from "./errors.js";
