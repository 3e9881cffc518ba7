"""PromptMix Studio core library: task model, project store, LLM layer, generation, relabeling,
training and evaluation. Never imports Streamlit; torch and transformers are imported lazily."""

__version__ = "0.1.0"
