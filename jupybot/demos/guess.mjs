// A number-guessing game in Node.js, shipped with jupybot as the catalogue's Node example: it
// reads lines with readline, prints on a timer, and starts within the default limits.
import { createInterface } from "node:readline/promises";
import { stdin, stdout } from "node:process";

const secret = 1 + Math.floor(Math.random() * 100);
const lines = createInterface({ input: stdin, output: stdout });
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

stdout.write("I am thinking of a number between 1 and 100");
for (let dot = 0; dot < 3; dot += 1) {
  await pause(200);
  stdout.write(".");
}
stdout.write("\n");

for (let tries = 1; ; tries += 1) {
  const answer = (await lines.question("Your guess? ")).trim();
  if (answer === "quit") break;
  const guess = Number.parseInt(answer, 10);
  if (Number.isNaN(guess)) {
    console.log("A whole number, please (or quit).");
  } else if (guess === secret) {
    console.log(`Yes, ${secret}! ${tries} ${tries === 1 ? "try" : "tries"}.`);
    break;
  } else {
    console.log(guess < secret ? "Higher." : "Lower.");
  }
}
lines.close();
