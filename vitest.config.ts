import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    // Two files at a time on the 2-core build machine: the integration files mostly wait on
    // child processes, fsyncs and PostgreSQL, so a second worker fills that time (vitest's
    // default there is one).
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
