// ESLint 9 (flat config) for the browser terminal's own JavaScript: `make lint` runs it.
import js from "@eslint/js";
import globals from "globals";

export default [
  {
    ignores: [
      "jupybot/terminal/static/vendor/", "build/", "dist/", "var/", "tests/peers/", ".venv/", ".cache/",
    ],
  },
  js.configs.recommended,
  {
    files: ["jupybot/terminal/static/**/*.js"],
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: globals.browser },
    rules: {
      eqeqeq: "error",
      "no-var": "error",
      "prefer-const": "error",
      "no-shadow": "error",
      "no-use-before-define": ["error", { functions: false, classes: false }],
      "no-unused-vars": ["error", { caughtErrors: "none" }],
    },
  },
  {
    files: ["esbuild.config.js", "eslint.config.js", "tests/js/**/*.js", "jupybot/demos/**/*.mjs"],
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: globals.node },
  },
];
