"""AI components that stage handlers call: LLM generation, sentence splitting, embeddings, retrieval.

Heavy libraries (torch, llama.cpp, vllm) are imported only where a model is loaded.
"""
