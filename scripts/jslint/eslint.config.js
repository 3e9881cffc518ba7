// ESLint for the review card (app_pages/review_card/*.js) and its unit tests (tests/js/*.test.js).
// Run by `make test` (scripts/ensure_js.py installs ESLint here) and by tests/test_review_card_js.py.
import js from "@eslint/js";
import globals from "globals";

export default [
  js.configs.recommended,
  {
    files: ["app_pages/review_card/**/*.js"],
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: { ...globals.browser } },
    rules: {
      "no-unused-vars": ["error", { args: "none", caughtErrors: "none" }],
      "no-var": "error",
      "prefer-const": "error",
      eqeqeq: ["error", "always"],
      "no-implicit-globals": "error",
      "no-shadow": "error",
      "no-eval": "error",
      "no-implied-eval": "error",
      "no-new-func": "error",
      curly: ["error", "multi-line"],
    },
  },
  {
    files: ["app_pages/review_card/outbox.js"],
    // the outbox logic is pure: no browser globals, so node --test runs it as is
    languageOptions: { globals: {} },
  },
  {
    files: ["tests/js/**/*.js"],
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: { ...globals.node } },
  },
];
