# dbus/: (rules added as this part is built)
