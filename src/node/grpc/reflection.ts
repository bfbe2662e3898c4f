/**
 * gRPC server reflection and the standard health service for a geospool node.
 *
 * Reflection serves the binary FileDescriptorSets that scripts/proto-gen.mjs
 * writes next to the generated code (src/proto/generated/spool.binpb for
 * proto/ and its imports, health.binpb for grpc.health.v1; both shipped to
 * dist/proto/generated/), so generic clients (grpcurl, buf curl, grpcui) can
 * call both services without the .proto files.
 */

import { readFileSync } from "node:fs";
import type * as grpc from "@grpc/grpc-js";
import { ReflectionService } from "@grpc/reflection";
import { HealthImplementation, type ServingStatus } from "grpc-health-check";
import protobuf from "protobufjs/minimal.js";
import { SPOOL_SERVICE_NAME } from "../../proto/service-definition.js";

export { HealthImplementation, type ServingStatus };

/** Where the descriptor set of proto/ lives, relative to this module (in src/ and in dist/). */
export const SPOOL_DESCRIPTOR_SET_URL = new URL(
  "../../proto/generated/spool.binpb",
  import.meta.url,
);

/** Where the descriptor set of grpc.health.v1 lives. */
export const HEALTH_DESCRIPTOR_SET_URL = new URL(
  "../../proto/generated/health.binpb",
  import.meta.url,
);

/** The fully qualified name of the standard health service. */
export const HEALTH_SERVICE_NAME = "grpc.health.v1.Health";

/**
 * The health-check service names a node answers for: "" (the whole server, what
 * Kubernetes probes ask) and the Spool service.
 */
export const HEALTH_CHECKED_SERVICES = ["", SPOOL_SERVICE_NAME] as const;

/**
 * Splits a serialized `google.protobuf.FileDescriptorSet` into its serialized
 * `FileDescriptorProto`s (field 1, `repeated FileDescriptorProto file`), byte for
 * byte, without decoding them.
 */
export function splitFileDescriptorSet(set: Uint8Array): Buffer[] {
  const reader = protobuf.Reader.create(set);
  const files: Buffer[] = [];
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    const field = tag >>> 3;
    const wireType = tag & 7;
    if (field === 1 && wireType === 2) files.push(Buffer.from(reader.bytes()));
    else reader.skipType(wireType);
  }
  return files;
}

let spoolFiles: Buffer[] | undefined;
let healthFiles: Buffer[] | undefined;

/** The serialized FileDescriptorProtos of proto/ and its imports (read once, then cached). */
export function spoolFileDescriptorProtos(): Buffer[] {
  spoolFiles ??= splitFileDescriptorSet(readFileSync(SPOOL_DESCRIPTOR_SET_URL));
  return spoolFiles;
}

/**
 * The serialized FileDescriptorProto of grpc.health.v1 (read once, then cached). Not the
 * one grpc-health-check builds through proto-loader: that one names its map entry
 * `Statuses` instead of `StatusesEntry`, which strict clients (buf curl, Go) reject.
 */
export function healthFileDescriptorProtos(): Buffer[] {
  healthFiles ??= splitFileDescriptorSet(readFileSync(HEALTH_DESCRIPTOR_SET_URL));
  return healthFiles;
}

type ReflectionPackage = ConstructorParameters<typeof ReflectionService>[0];

/**
 * A package definition in the shape @grpc/reflection reads: it only looks at the
 * `fileDescriptorProtos` of each value (and dedupes files by name), so one
 * message-type-shaped value carrying every file is enough.
 */
function reflectionPackage(files: Buffer[]): ReflectionPackage {
  const carrier = {
    format: "Protocol Buffer 3 DescriptorProto",
    type: {},
    fileDescriptorProtos: files,
  };
  return { [SPOOL_SERVICE_NAME]: carrier } as unknown as ReflectionPackage;
}

/**
 * Adds gRPC server reflection (grpc.reflection.v1 and v1alpha) to the server,
 * describing geospool.v1.Spool and grpc.health.v1.Health.
 */
export function addReflection(server: Pick<grpc.Server, "addService">): ReflectionService {
  const reflection = new ReflectionService(
    reflectionPackage([...spoolFileDescriptorProtos(), ...healthFileDescriptorProtos()]),
    { services: [SPOOL_SERVICE_NAME, HEALTH_SERVICE_NAME] },
  );
  reflection.addToServer(server);
  return reflection;
}

/**
 * Adds the standard health service (grpc.health.v1.Health: Check, Watch, List)
 * to the server and returns its implementation, with every name of
 * `HEALTH_CHECKED_SERVICES` at `status` (default NOT_SERVING: the daemon flips
 * it with `setServingStatus` once it is ready, and back when it drains).
 */
export function addHealth(
  server: Pick<grpc.Server, "addService">,
  status: ServingStatus = "NOT_SERVING",
): HealthImplementation {
  const health = new HealthImplementation(
    Object.fromEntries(HEALTH_CHECKED_SERVICES.map((name) => [name, status])),
  );
  health.addToServer(server);
  return health;
}

/** Sets every name of `HEALTH_CHECKED_SERVICES` to `status` (watchers are notified). */
export function setServingStatus(health: HealthImplementation, status: ServingStatus): void {
  for (const name of HEALTH_CHECKED_SERVICES) health.setStatus(name, status);
}
