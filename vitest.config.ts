import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    // Two files at a time on the 2-core build machine: the suite takes about 10 minutes
    // instead of 16. (The two timing-sensitive failures that once kept it at one file were
    // a real race between two finishes of one checkout, fixed in f603d42, and a campaign
    // check that read queue depths beside an ExtendLease.)
    maxWorkers: 2,
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
