#!/usr/bin/python3
"""spm_fixture.py - a real SentencePiece model for the export tests
(python3-sentencepiece).

  spm_fixture.py train CORPUS... -o MODEL -v VOCAB
      trains a BPE model the way Llama 2's tokenizer.model is set up
      (byte fallback, digits split, identity normalization, a dummy prefix,
      whitespace kept as it is; unk 0, bos 1, eos 2, no pad) on the text
      files given, one sentence a line
  spm_fixture.py encode MODEL TEXTFILE
      the ids SentencePiece itself gives the text (no bos/eos), as JSON
"""
import io
import json
import sys

import sentencepiece as spm


def main():
    if sys.argv[1] == "train":
        args = sys.argv[2:]
        out = args[args.index("-o") + 1]
        vocab = int(args[args.index("-v") + 1])
        files = [a for i, a in enumerate(args) if a not in ("-o", "-v") and
                 (i == 0 or args[i - 1] not in ("-o", "-v"))]
        lines = []
        for f in files:
            lines += [l.strip() for l in open(f, encoding="utf-8", errors="replace") if l.strip()]
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=model, vocab_size=vocab,
            model_type="bpe", byte_fallback=True, split_digits=True,
            normalization_rule_name="identity", remove_extra_whitespaces=False,
            add_dummy_prefix=True, allow_whitespace_only_pieces=True, num_threads=1,
            character_coverage=1.0, minloglevel=2)
        open(out, "wb").write(model.getvalue())
    elif sys.argv[1] == "encode":
        sp = spm.SentencePieceProcessor(model_file=sys.argv[2])
        text = open(sys.argv[3], encoding="utf-8").read()
        print(json.dumps(sp.encode(text)))
    else:
        sys.exit("unknown command " + sys.argv[1])


main()
