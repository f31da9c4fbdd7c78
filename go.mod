module github.com/distkit/distkit

go 1.26
