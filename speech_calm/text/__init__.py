"""The text experiments: rows and text models, the experiment contract, the key-value task (paper §4.1) and
Telugu→English translation."""

