"""Stage 8, train: one training loop (:func:`lungcad.train.loop.fit`) for every model and strategy."""
