"""Part III, Pretraining: the data a model is trained on, its tokenizer, the GPT, the trainer
and text generation.

The GPT, the tokenizer and the trainer defined here are the book's workhorse: Part III's later
chapters and all of Part IV reuse them rather than writing a model of their own.
"""

# -- data -----------------------------------------------------------------------------------

# -- tokenization ---------------------------------------------------------------------------

# -- the model and generation ---------------------------------------------------------------

# -- training -------------------------------------------------------------------------------
