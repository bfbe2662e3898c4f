import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    // One file at a time (vitest's default on 2 cores). Two at a time took the suite from 17
    // to 10 minutes, but under that load grpc-bad-input's ClusterStatus count and an idle
    // PostgreSQL client's end in gc-walk.test.ts failed once each (2026-12-06): fix those,
    // then try `maxWorkers: 2` again.
    reporters: ["default"],
    // `npm run test:unit` runs the first, `npm run test:integration` the second.
    projects: [
      {
        extends: true,
        test: { name: "unit", include: ["src/**/*.test.ts", "test/helpers/**/*.test.ts"] },
      },
      {
        extends: true,
        test: {
          name: "integration",
          include: ["test/integration/**/*.test.ts"],
          globalSetup: ["test/integration-setup.ts"],
        },
      },
    ],
  },
});
