"""Sources an import can come from: git (hardened clone via a mirror cache), Hugging Face."""
