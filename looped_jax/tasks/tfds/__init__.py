"""TFDS datasets (array_record, no TensorFlow needed) for sudoku and held-out reasoning sets.

  builders.py  `LoopedSudoku` ("looped_sudoku"), `LoopedReasoning` ("looped_reasoning") and
               `SudokuCsv` ("sudoku_csv", Sudoku-Extreme CSV files from a manual dir)
  reader.py    `tfds.data_source` + grain -> batches in the task dict format

Import the submodules explicitly; this package stays empty so that the task registry,
which imports every module under `looped_jax.tasks`, never pulls in tensorflow_datasets.
"""
