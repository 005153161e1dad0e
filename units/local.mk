# units/: (rules added as this part is built)
