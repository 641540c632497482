// llama_eval.mjs - runs the real llama.cpp (node-llama-cpp's prebuilt CPU
// build) on a GGUF file for the export tests:
//   node llama_eval.mjs eval MODEL.gguf 1,2,3 OUT.json   every logit of every position
//   node llama_eval.mjs tokenize MODEL.gguf TEXTFILE      token ids, as JSON, on stdout
// NODE_LLAMA_CPP_DIR names the npm prefix node-llama-cpp is installed in.
// Exact comparisons need an F32 KV cache and no flash attention, and a
// context longer than the sequence (llama.cpp shifts the last position
// otherwise).
import {readFileSync, writeFileSync} from "node:fs";

const dir = process.env.NODE_LLAMA_CPP_DIR || "/opt/node-llama-cpp";
const {getLlama, LlamaLogLevel} = await import(`${dir}/node_modules/node-llama-cpp/dist/index.js`);
const [mode, modelPath, arg, out] = process.argv.slice(2);
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath, gpuLayers: 0});
if (mode === "tokenize") {
	const text = readFileSync(arg, "utf8");
	process.stdout.write(JSON.stringify(model.tokenize(text, false)) + "\n");
} else if (mode === "eval") {
	const tokens = arg.split(",").map(Number);
	const context = await model.createContext({
		contextSize: Math.max(64, tokens.length + 16),
		experimentalKvCacheKeyType: "F32",
		experimentalKvCacheValueType: "F32",
		flashAttention: false,
	});
	const seq = context.getSequence();
	const res = await seq.controlledEvaluate(tokens.map((t) => [t, {generateNext: {logits: true}}]));
	const logits = res.map((r) => {
		const row = new Array(r.next.logits.size).fill(null);
		for (const [tok, v] of r.next.logits) row[tok] = v;
		return row;
	});
	writeFileSync(out, JSON.stringify({logits}));
	await context.dispose();
} else {
	console.error(`unknown mode ${mode}`);
	process.exit(2);
}
await model.dispose();
await llama.dispose();
