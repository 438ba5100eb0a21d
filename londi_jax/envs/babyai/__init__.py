"""BabyAI-Text: minigrid's BabyAI levels described in sentences (`env`, `render`, `levels`), the
prompts LM policies read (`prompts`) and expert demonstrations from BabyAI's bot (`expert`)."""
